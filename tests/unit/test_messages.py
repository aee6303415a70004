import pytest

from chronoverse.errors import MalformedMessageError
from chronoverse.messages import MAX_MESSAGE_BYTES, decode_object, encode


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
    ],
)
def test_malformed_values_are_rejected_with_a_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(MalformedMessageError, match=reason):
        decode_object(None, value)
