from typing import Any

import pytest

from chronoverse.domain import WorkflowKind
from chronoverse.errors import InvalidFieldsError
from chronoverse.secrets import (
    MASK,
    SECRET_FIELDS,
    SecretBox,
    SecretError,
    generate_key,
    is_sealed,
    mask_payload,
    open_payload,
    rotate_payload,
    seal_payload,
    seal_unsealed,
)

CONTAINER = WorkflowKind.CONTAINER
HEARTBEAT = WorkflowKind.HEARTBEAT
BOX = SecretBox([generate_key()])


def test_the_secret_fields() -> None:
    assert dict(SECRET_FIELDS) == {CONTAINER: "env", HEARTBEAT: "headers"}


def test_seal_then_open_round_trips_and_leaves_other_fields() -> None:
    payload: dict[str, Any] = {"image": "busybox", "env": {"TOKEN": "s3cret", "EMPTY": ""}}
    sealed = seal_payload(BOX, CONTAINER, payload, None)
    assert sealed["image"] == "busybox"
    assert sealed["env"].keys() == {"TOKEN", "EMPTY"}
    assert all(is_sealed(v) for v in sealed["env"].values())
    assert "s3cret" not in repr(sealed)
    assert open_payload(BOX, CONTAINER, sealed) == payload
    assert payload["env"]["TOKEN"] == "s3cret"  # the input is not changed


def test_heartbeat_headers_are_the_secret_field() -> None:
    payload = {"endpoint": "http://127.0.0.1/", "headers": {"Authorization": "Bearer x"}}
    sealed = seal_payload(BOX, HEARTBEAT, payload, None)
    assert is_sealed(sealed["headers"]["Authorization"])
    assert open_payload(BOX, HEARTBEAT, sealed) == payload
    assert mask_payload(HEARTBEAT, sealed)["headers"] == {"Authorization": MASK}


def test_a_payload_without_the_field_is_unchanged() -> None:
    assert seal_payload(BOX, HEARTBEAT, {}, None) == {}
    assert open_payload(BOX, HEARTBEAT, {}) == {}
    assert mask_payload(HEARTBEAT, {}) == {}


def test_a_value_that_looks_sealed_is_still_sealed() -> None:
    # What a client sends is always plain: it cannot plant a ciphertext of its choosing.
    sealed = seal_payload(BOX, CONTAINER, {"env": {"X": "enc:v1:abc"}}, None)
    assert open_payload(BOX, CONTAINER, sealed) == {"env": {"X": "enc:v1:abc"}}


def test_the_mask_keeps_the_previous_ciphertext() -> None:
    previous = seal_payload(BOX, CONTAINER, {"env": {"A": "a", "B": "b"}}, None)
    sealed = seal_payload(BOX, CONTAINER, {"env": {"A": MASK, "B": "new"}}, previous)
    assert sealed["env"]["A"] == previous["env"]["A"]
    assert open_payload(BOX, CONTAINER, sealed) == {"env": {"A": "a", "B": "new"}}


def test_the_mask_seals_a_previous_value_stored_before_encryption() -> None:
    sealed = seal_payload(BOX, CONTAINER, {"env": {"A": MASK}}, {"env": {"A": "plain"}})
    assert open_payload(BOX, CONTAINER, sealed) == {"env": {"A": "plain"}}


@pytest.mark.parametrize(
    ("kind", "field", "previous"),
    [
        (CONTAINER, "env", None),
        (CONTAINER, "env", {"env": {"OTHER": "x"}}),
        (HEARTBEAT, "headers", {"endpoint": "http://127.0.0.1/"}),
    ],
)
def test_a_mask_without_a_stored_value_names_the_field(
    kind: WorkflowKind, field: str, previous: dict[str, object] | None
) -> None:
    with pytest.raises(InvalidFieldsError) as caught:
        seal_payload(BOX, kind, {field: {"KEY": MASK, "OK": "v"}}, previous)
    [error] = caught.value.errors
    assert error.field == f"payload.{field}.KEY"
    assert "mask" in error.message and "send the value" in error.message


def test_mask_shows_keys_only() -> None:
    sealed = seal_payload(BOX, CONTAINER, {"image": "i", "env": {"A": "1", "B": "2"}}, None)
    assert mask_payload(CONTAINER, sealed) == {"image": "i", "env": {"A": MASK, "B": MASK}}
    assert mask_payload(CONTAINER, {"env": {}}) == {"env": {}}


def test_open_refuses_an_unsealed_value() -> None:
    with pytest.raises(SecretError, match=r"payload\.env\.A"):
        open_payload(BOX, CONTAINER, {"env": {"A": "plain"}})


def test_another_key_cannot_open() -> None:
    sealed = seal_payload(BOX, CONTAINER, {"env": {"A": "a"}}, None)
    with pytest.raises(SecretError, match="CHRONOVERSE_SECRET_KEYS"):
        open_payload(SecretBox([generate_key()]), CONTAINER, sealed)


def test_seal_unsealed_is_idempotent() -> None:
    stored = {"env": {"OLD": "plain", "NEW": BOX.seal("sealed")}}
    once = seal_unsealed(BOX, CONTAINER, stored)
    assert once["env"]["NEW"] == stored["env"]["NEW"]
    assert open_payload(BOX, CONTAINER, once) == {"env": {"OLD": "plain", "NEW": "sealed"}}
    assert seal_unsealed(BOX, CONTAINER, once) == once


def test_rotation_reseals_with_the_first_key() -> None:
    old_key, new_key = generate_key(), generate_key()
    stored = seal_payload(SecretBox([old_key]), HEARTBEAT, {"headers": {"X": "v"}}, None)
    rotated = rotate_payload(SecretBox([new_key, old_key]), HEARTBEAT, stored)
    assert open_payload(SecretBox([new_key]), HEARTBEAT, rotated) == {"headers": {"X": "v"}}
