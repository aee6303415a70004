"""The operator's container policy: networks, ceilings, volumes, the sandbox and sealed definitions.

Pure: no Docker, no Redis. The same rules run against the real engine in tests/e2e.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from uuid import uuid4

import pytest

from chronoverse.definitions import (
    ContainerDefinition,
    UnverifiedDefinitionError,
    define,
    volume_name,
)
from chronoverse.domain import WorkflowKind
from chronoverse.errors import ConfigurationError, InvalidFieldsError
from chronoverse.payloads import ContainerPayload, ContainerPolicy, parse_payload
from chronoverse.secrets import SecretBox, generate_key
from chronoverse.settings import ContainerSettings
from services.execution_worker.sandbox import Sandbox

POLICY = ContainerPolicy(
    networks=("none", "jobs"),
    max_memory_mb=512,
    max_cpus=1.5,
    max_pids=300,
    max_timeout_s=7200,
    max_volumes=2,
)


def errors(raw: dict[str, Any], policy: ContainerPolicy = POLICY) -> dict[str, str]:
    with pytest.raises(InvalidFieldsError) as info:
        parse_payload(WorkflowKind.CONTAINER, raw, policy)
    return {e.field: e.message for e in info.value.errors}


@pytest.mark.parametrize("network", ["host", "bridge", "container:abc"])
def test_a_network_the_operator_does_not_allow_is_refused_naming_the_allowed_ones(
    network: str,
) -> None:
    found = errors({"image": "busybox", "network": network})
    assert set(found) == {"payload.network"}
    assert "allowed: none, jobs" in found["payload.network"]


def test_host_is_refused_by_default_too() -> None:
    found = errors({"image": "busybox", "network": "host"}, ContainerPolicy())
    assert found == {"payload.network": "'host' is not allowed; allowed: none"}


def test_an_allowed_network_and_the_default_one() -> None:
    chosen = parse_payload(WorkflowKind.CONTAINER, {"image": "b", "network": "jobs"}, POLICY)
    default = parse_payload(WorkflowKind.CONTAINER, {"image": "b"}, POLICY)
    assert isinstance(chosen, ContainerPayload) and isinstance(default, ContainerPayload)
    assert POLICY.network_of(chosen) == "jobs" and POLICY.network_of(default) == "none"


@pytest.mark.parametrize(
    ("raw", "field", "ceiling"),
    [
        ({"resources": {"memory_mb": 513}}, "payload.resources.memory_mb", "512"),
        ({"resources": {"cpus": 2}}, "payload.resources.cpus", "1.5"),
        ({"resources": {"pids": 301}}, "payload.resources.pids", "300"),
        ({"timeout_seconds": 7201}, "payload.timeout_seconds", "7200"),
        (
            {"volumes": [{"name": n, "path": f"/{n}"} for n in ("a", "b", "c")]},
            "payload.volumes",
            "2",
        ),
    ],
)
def test_a_payload_above_a_ceiling_is_refused_naming_the_field_and_the_ceiling(
    raw: dict[str, Any], field: str, ceiling: str
) -> None:
    found = errors({"image": "busybox", **raw})
    assert list(found) == [field]
    assert f"above the ceiling of {ceiling}" in found[field]


def test_at_the_ceiling_is_allowed() -> None:
    parse_payload(
        WorkflowKind.CONTAINER,
        {
            "image": "busybox",
            "resources": {"memory_mb": 512, "cpus": 1.5, "pids": 300},
            "timeout_seconds": 7200,
        },
        POLICY,
    )


@pytest.mark.parametrize(
    ("volume", "field"),
    [
        ({"name": "Cache", "path": "/data"}, "payload.volumes.0.name"),
        ({"name": "../etc", "path": "/data"}, "payload.volumes.0.name"),
        ({"name": "cache", "path": "data"}, "payload.volumes.0.path"),
        ({"name": "cache", "path": "/"}, "payload.volumes.0.path"),
        ({"name": "cache", "path": "/proc/x"}, "payload.volumes.0.path"),
        ({"name": "cache", "path": "/tmp"}, "payload.volumes.0.path"),
        ({"name": "cache", "path": "/a/../b"}, "payload.volumes.0.path"),
        (
            {"name": "cache", "path": "/var/run/docker.sock", "source": "/"},
            "payload.volumes.0.source",
        ),
        ({"name": "cache", "path": "/data", "host_path": "/"}, "payload.volumes.0.host_path"),
    ],
)
def test_volumes_are_named_never_host_paths(volume: dict[str, Any], field: str) -> None:
    assert field in errors({"image": "busybox", "volumes": [volume]})


def test_a_volume_name_or_path_appears_once() -> None:
    twice = [{"name": "a", "path": "/a"}, {"name": "a", "path": "/b"}]
    assert "payload.volumes" in errors({"image": "busybox", "volumes": twice})
    same_path = [{"name": "a", "path": "/a"}, {"name": "b", "path": "/a"}]
    assert "payload.volumes" in errors({"image": "busybox", "volumes": same_path})


def test_two_users_volumes_of_one_name_are_two_docker_volumes() -> None:
    first, second = uuid4(), uuid4()
    assert volume_name(first, "cache") != volume_name(second, "cache")
    assert volume_name(first, "cache") == f"chronoverse-{first}-cache"


@pytest.mark.parametrize("networks", ["host", "none,host", "container:db", "bad name"])
def test_the_operator_cannot_allow_the_host_network(networks: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        ContainerSettings.from_environ({"CHRONOVERSE_CONTAINER_NETWORKS": networks})
    assert info.value.setting == "CHRONOVERSE_CONTAINER_NETWORKS"


def test_ceilings_come_from_the_settings() -> None:
    settings = ContainerSettings.from_environ(
        {
            "CHRONOVERSE_CONTAINER_NETWORKS": "none, jobs",
            "CHRONOVERSE_CONTAINER_MAX_MEMORY_MB": "512",
        }
    )
    policy = ContainerPolicy.from_settings(settings)
    assert policy.networks == ("none", "jobs") and policy.max_memory_mb == 512


# --- definitions: what the execution worker runs ----------------------------------------------


def definition(**payload: Any) -> ContainerDefinition:
    parsed = ContainerPayload.model_validate({"image": "busybox", **payload})
    return define(uuid4(), 2, parsed, "sha256:abc", user_id=uuid4(), policy=POLICY)


def test_the_sandbox_confines_every_container() -> None:
    config = Sandbox(user="65534:65534", tmpfs_mb=32, nofile=256).host_config(
        definition(working_dir="/work", volumes=[{"name": "cache", "path": "/data"}])
    )
    assert config["cap_drop"] == ["ALL"]
    assert config["security_opt"] == ["no-new-privileges"]
    assert config["read_only"] is True and config["privileged"] is False
    assert config["user"] == "65534:65534"
    assert set(config["tmpfs"]) == {"/tmp", "/work"}
    assert "size=32m" in config["tmpfs"]["/tmp"]
    assert "uid=65534,gid=65534" in config["tmpfs"]["/work"]
    assert config["memswap_limit"] == config["mem_limit"] == "256m"
    assert [(u["Name"], u["Soft"], u["Hard"]) for u in config["ulimits"]] == [("nofile", 256, 256)]
    assert config["log_config"]["Config"] == {"max-size": "1m", "max-file": "2"}
    assert config["network_mode"] == "none"
    [mount] = config["mounts"]
    assert (mount["Type"], mount["Target"], mount["ReadOnly"]) == ("volume", "/data", False)


def test_a_working_dir_the_image_has_keeps_its_files() -> None:
    built = replace(definition(working_dir="/app"), working_dir_in_image=True)
    config = Sandbox(user=None, tmpfs_mb=8, nofile=64).host_config(built)
    assert set(config["tmpfs"]) == {"/tmp"}


def test_a_working_dir_that_is_a_volume_gets_no_tmpfs() -> None:
    config = Sandbox(user=None, tmpfs_mb=8, nofile=64).host_config(
        definition(working_dir="/data", volumes=[{"name": "cache", "path": "/data"}])
    )
    assert set(config["tmpfs"]) == {"/tmp"}
    assert config["user"] is None  # the image's own user, when the operator allows it


def test_a_sealed_definition_round_trips_and_hides_its_env() -> None:
    box = SecretBox([generate_key()])
    built = definition(env={"API_KEY": "s3cret-value"})
    sealed = built.seal(box)
    assert b"s3cret-value" not in sealed and b"API_KEY" not in sealed
    opened = ContainerDefinition.unseal(
        box, sealed, workflow_id=built.workflow_id, generation=built.generation
    )
    assert opened == built


def test_a_definition_sealed_with_another_key_or_edited_is_refused() -> None:
    box = SecretBox([generate_key()])
    built = definition()
    with pytest.raises(UnverifiedDefinitionError):
        ContainerDefinition.unseal(
            SecretBox([generate_key()]),
            built.seal(box),
            workflow_id=built.workflow_id,
            generation=2,
        )
    planted = replace(built, network="host").to_json().encode()  # not sealed at all
    with pytest.raises(UnverifiedDefinitionError):
        ContainerDefinition.unseal(box, planted, workflow_id=built.workflow_id, generation=2)
    token = bytearray(built.seal(box))
    token[40] ^= 1
    with pytest.raises(UnverifiedDefinitionError):
        ContainerDefinition.unseal(box, bytes(token), workflow_id=built.workflow_id, generation=2)


def test_a_definition_sealed_for_another_workflow_or_generation_is_refused() -> None:
    box = SecretBox([generate_key()])
    built = definition()
    with pytest.raises(UnverifiedDefinitionError, match="sealed for workflow"):
        ContainerDefinition.unseal(box, built.seal(box), workflow_id=uuid4(), generation=2)
    with pytest.raises(UnverifiedDefinitionError, match="generation 2"):
        ContainerDefinition.unseal(
            box, built.seal(box), workflow_id=built.workflow_id, generation=3
        )


def test_a_definition_is_checked_against_the_policy_again_when_it_runs() -> None:
    built = definition(resources={"memory_mb": 512})
    assert built.refusal(POLICY) is None
    refusal = replace(built, network="host").refusal(POLICY)
    assert refusal is not None and "network 'host' is not allowed" in refusal
    tighter = replace(POLICY, max_memory_mb=256)
    refusal = built.refusal(tighter)
    assert refusal is not None and "memory_mb 512 is above the ceiling of 256" in refusal
    stolen = definition(volumes=[{"name": "cache", "path": "/data"}])
    other = replace(stolen, user_id=str(uuid4()))
    refusal = other.refusal(POLICY)
    assert refusal is not None and "is not the owner's" in refusal
