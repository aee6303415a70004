"""The gRPC API over a real channel against real Postgres."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from chronoverse.v1 import auth_pb2, auth_pb2_grpc, workflows_pb2, workflows_pb2_grpc

pytestmark = pytest.mark.integration

Metadata = tuple[tuple[str, str], ...]


def login(channel: grpc.Channel) -> Metadata:
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    email = f"grpc-{uuid.uuid4().hex[:10]}@example.com"
    stub.Register(auth_pb2.RegisterRequest(email=email, password="correct horse"))
    token = stub.Login(auth_pb2.LoginRequest(email=email, password="correct horse")).token
    return (("authorization", f"Bearer {token}"),)


def field_violations(error: grpc.RpcError) -> set[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    fields: set[str] = set()
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request)
        fields |= {v.field for v in bad_request.field_violations}
    return fields


@pytest.fixture
def stub(grpc_channel: grpc.Channel) -> workflows_pb2_grpc.WorkflowServiceStub:
    return workflows_pb2_grpc.WorkflowServiceStub(grpc_channel)


@pytest.fixture
def auth(grpc_channel: grpc.Channel) -> Metadata:
    return login(grpc_channel)


def heartbeat(name: str = "ping") -> workflows_pb2.CreateWorkflowRequest:
    return workflows_pb2.CreateWorkflowRequest(name=name, kind="HEARTBEAT", interval=5)


def test_create_get_list_update_terminate_delete(
    stub: workflows_pb2_grpc.WorkflowServiceStub, auth: Metadata
) -> None:
    payload = json.dumps({"image": "local/busybox:latest", "command": ["echo", "hi"]})
    created = stub.CreateWorkflow(
        workflows_pb2.CreateWorkflowRequest(
            name="box",
            kind="CONTAINER",
            payload_json=payload,
            interval=15,
            max_consecutive_job_failures_allowed=2,
        ),
        metadata=auth,
    )
    assert created.kind == "CONTAINER"
    assert created.build_status == "QUEUED"
    assert created.max_consecutive_job_failures_allowed == 2
    assert json.loads(created.payload_json)["network"] == "none"
    assert not created.HasField("terminated_at")

    assert (
        stub.GetWorkflow(workflows_pb2.GetWorkflowRequest(id=created.id), metadata=auth) == created
    )
    listed = stub.ListWorkflows(workflows_pb2.ListWorkflowsRequest(kind="CONTAINER"), metadata=auth)
    assert [w.id for w in listed.workflows] == [created.id]
    assert listed.next_cursor == ""

    updated = stub.UpdateWorkflow(
        workflows_pb2.UpdateWorkflowRequest(id=created.id, name="renamed", interval=30),
        metadata=auth,
    )
    assert (updated.name, updated.interval, updated.generation) == (
        "renamed",
        30,
        created.generation,
    )

    terminated = stub.TerminateWorkflow(
        workflows_pb2.TerminateWorkflowRequest(id=created.id), metadata=auth
    )
    assert terminated.HasField("terminated_at")
    with pytest.raises(grpc.RpcError) as info:
        stub.UpdateWorkflow(
            workflows_pb2.UpdateWorkflowRequest(id=created.id, name="x"), metadata=auth
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    stub.DeleteWorkflow(workflows_pb2.DeleteWorkflowRequest(id=created.id), metadata=auth)
    with pytest.raises(grpc.RpcError) as info:
        stub.GetWorkflow(workflows_pb2.GetWorkflowRequest(id=created.id), metadata=auth)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_pagination(stub: workflows_pb2_grpc.WorkflowServiceStub, auth: Metadata) -> None:
    ids = [stub.CreateWorkflow(heartbeat(f"w{i}"), metadata=auth).id for i in range(3)]
    first = stub.ListWorkflows(workflows_pb2.ListWorkflowsRequest(limit=2), metadata=auth)
    second = stub.ListWorkflows(
        workflows_pb2.ListWorkflowsRequest(limit=2, cursor=first.next_cursor), metadata=auth
    )
    assert [w.id for w in [*first.workflows, *second.workflows]] == list(reversed(ids))
    assert second.next_cursor == ""


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (workflows_pb2.CreateWorkflowRequest(name="", kind="HEARTBEAT", interval=5), "name"),
        (workflows_pb2.CreateWorkflowRequest(name="x", kind="CRON", interval=5), "kind"),
        (workflows_pb2.CreateWorkflowRequest(name="x", kind="HEARTBEAT", interval=0), "interval"),
        (
            workflows_pb2.CreateWorkflowRequest(
                name="x", kind="HEARTBEAT", interval=5, max_consecutive_job_failures_allowed=500
            ),
            "max_consecutive_job_failures_allowed",
        ),
        (
            workflows_pb2.CreateWorkflowRequest(
                name="x", kind="CONTAINER", interval=5, payload_json='{"image": "UPPER"}'
            ),
            "payload.image",
        ),
        (
            workflows_pb2.CreateWorkflowRequest(
                name="x",
                kind="HEARTBEAT",
                interval=5,
                payload_json='{"endpoint": "https://e.com", "method": "PUT"}',
            ),
            "payload.method",
        ),
        (
            workflows_pb2.CreateWorkflowRequest(
                name="x", kind="HEARTBEAT", interval=5, payload_json="{oops"
            ),
            "payload",
        ),
    ],
)
def test_invalid_fields_are_invalid_argument_naming_the_field(
    stub: workflows_pb2_grpc.WorkflowServiceStub,
    auth: Metadata,
    request_: workflows_pb2.CreateWorkflowRequest,
    field: str,
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateWorkflow(request_, metadata=auth)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(info.value)


def test_list_parameters_are_validated(
    stub: workflows_pb2_grpc.WorkflowServiceStub, auth: Metadata
) -> None:
    for request_, field in [
        (workflows_pb2.ListWorkflowsRequest(limit=500), "limit"),
        (workflows_pb2.ListWorkflowsRequest(kind="CRON"), "kind"),
        (workflows_pb2.ListWorkflowsRequest(cursor="junk"), "cursor"),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            stub.ListWorkflows(request_, metadata=auth)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in field_violations(info.value)


def test_bad_ids_are_invalid_argument(
    stub: workflows_pb2_grpc.WorkflowServiceStub, auth: Metadata
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.GetWorkflow(workflows_pb2.GetWorkflowRequest(id="nope"), metadata=auth)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(info.value) == {"id"}


def test_no_token_is_unauthenticated(stub: workflows_pb2_grpc.WorkflowServiceStub) -> None:
    for metadata in [(), (("authorization", "Bearer wrong"),)]:
        with pytest.raises(grpc.RpcError) as info:
            stub.ListWorkflows(workflows_pb2.ListWorkflowsRequest(), metadata=metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_another_users_workflow_is_not_found(
    grpc_channel: grpc.Channel, stub: workflows_pb2_grpc.WorkflowServiceStub, auth: Metadata
) -> None:
    other = login(grpc_channel)
    created = stub.CreateWorkflow(heartbeat(), metadata=auth)
    for call, request_ in [
        (stub.GetWorkflow, workflows_pb2.GetWorkflowRequest(id=created.id)),
        (stub.UpdateWorkflow, workflows_pb2.UpdateWorkflowRequest(id=created.id, name="x")),
        (stub.TerminateWorkflow, workflows_pb2.TerminateWorkflowRequest(id=created.id)),
        (stub.DeleteWorkflow, workflows_pb2.DeleteWorkflowRequest(id=created.id)),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            call(request_, metadata=other)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert stub.ListWorkflows(workflows_pb2.ListWorkflowsRequest(), metadata=other).workflows == []


def test_idempotency_key_metadata(
    stub: workflows_pb2_grpc.WorkflowServiceStub, auth: Metadata
) -> None:
    keyed = (*auth, ("idempotency-key", "grpc-key-1"))
    first = stub.CreateWorkflow(heartbeat(), metadata=keyed)
    assert stub.CreateWorkflow(heartbeat(), metadata=keyed) == first
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateWorkflow(heartbeat("different"), metadata=keyed)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_register_errors(grpc_channel: grpc.Channel) -> None:
    stub = auth_pb2_grpc.AuthServiceStub(grpc_channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Register(auth_pb2.RegisterRequest(email="bad", password="short"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_violations(info.value) == {"email", "password"}
    email = f"dup-{uuid.uuid4().hex[:8]}@example.com"
    stub.Register(auth_pb2.RegisterRequest(email=email, password="long enough"))
    with pytest.raises(grpc.RpcError) as info:
        stub.Register(auth_pb2.RegisterRequest(email=email, password="long enough"))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as info:
        stub.Login(auth_pb2.LoginRequest(email=email, password="wrong one"))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_logout_revokes_the_token(
    grpc_channel: grpc.Channel, stub: workflows_pb2_grpc.WorkflowServiceStub
) -> None:
    auth = login(grpc_channel)
    auth_pb2_grpc.AuthServiceStub(grpc_channel).Logout(auth_pb2.LogoutRequest(), metadata=auth)
    with pytest.raises(grpc.RpcError) as info:
        stub.ListWorkflows(workflows_pb2.ListWorkflowsRequest(), metadata=auth)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
