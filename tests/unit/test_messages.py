import json
from uuid import uuid4

import pytest

from chronoverse.domain import WorkflowKind
from chronoverse.errors import MalformedMessageError
from chronoverse.events import WorkflowEvent, WorkflowEventType
from chronoverse.jobs import JOB_MESSAGE_VERSION, JobMessage, decode_job_message
from chronoverse.messages import MAX_MESSAGE_BYTES, MAX_NESTING, decode_object, encode, nesting


def test_round_trip() -> None:
    assert decode_object(b"k", encode({"v": 1, "job_id": "x"})) == {"v": 1, "job_id": "x"}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty"),
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b"x" * (MAX_MESSAGE_BYTES + 1), "exceeds"),
        # Deeper than the interpreter's recursion limit: json.loads raises RecursionError.
        (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested deeper"),
        # Decodable, but deep enough to break whatever walks it recursively later.
        (b'{"a":' + b"[" * 200 + b"]" * 200 + b"}", "nested deeper"),
        (b'{"a":' + b'{"b":' * 32 + b"1" + b"}" * 32 + b"}", "nested deeper"),
    ],
)
def test_malformed_values_are_rejected_with_a_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        decode_object(None, value)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    value = b'{"a":' + b"[" * (MAX_NESTING - 1) + b"]" * (MAX_NESTING - 1) + b"}"
    assert nesting(decode_object(None, value)) == MAX_NESTING
    assert nesting({"lines": [{"seq": 1}]}) == 3
    assert nesting(1) == 0


def test_workflow_events_round_trip_in_the_documented_format() -> None:
    event = WorkflowEvent(
        type=WorkflowEventType.TERMINATED,
        workflow_id=uuid4(),
        user_id=uuid4(),
        kind=WorkflowKind.CONTAINER,
        generation=3,
    )
    assert WorkflowEvent.decode(b"k", event.encode()) == event
    assert json.loads(event.encode()) == {
        "v": 1,
        "type": "workflow.terminated",
        "workflow_id": str(event.workflow_id),
        "user_id": str(event.user_id),
        "kind": "CONTAINER",
        "generation": 3,
    }
    assert [t for t in WorkflowEventType if t.needs_build] == [
        WorkflowEventType.CREATED,
        WorkflowEventType.UPDATED,
    ]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"v": 2}, "unsupported"),
        ({"type": "workflow.paused"}, "unsupported"),
        ({"type": ["workflow.created"]}, "unsupported"),
        ({"kind": "CRON"}, "bad workflow event"),
        ({"workflow_id": "x"}, "bad workflow event"),
        ({"generation": None}, "bad workflow event"),
    ],
)
def test_malformed_workflow_events_are_rejected(changes: dict[str, object], reason: str) -> None:
    body = {
        "v": 1,
        "type": "workflow.created",
        "workflow_id": str(uuid4()),
        "user_id": str(uuid4()),
        "kind": "HEARTBEAT",
        "generation": 1,
    }
    with pytest.raises(MalformedMessageError, match=reason):
        WorkflowEvent.decode(None, encode({**body, **changes}))


def test_a_job_message_is_encoded_as_the_generic_encoder_would_and_decodes_back() -> None:
    message = JobMessage(job_id=uuid4(), workflow_id=uuid4())
    wire = message.encode()
    assert wire == encode(
        {
            "v": JOB_MESSAGE_VERSION,
            "type": "job.ready",
            "job_id": str(message.job_id),
            "workflow_id": str(message.workflow_id),
        }
    )
    assert decode_job_message(None, wire) == message
