"""Image references: the API refuses what Docker would refuse, naming `payload.image`.

The boundaries below are Docker's own answers (Docker 20.10, `docker image inspect`): a bare name
of 237 characters is looked up, one of 238 is a 400 "repository name must not be more than 255
characters", since Docker counts the `docker.io/library/` it implies.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chronoverse import payloads
from chronoverse.domain import WorkflowKind
from chronoverse.errors import InvalidFieldsError
from chronoverse.payloads import MAX_IMAGE_REFERENCE, image_reference_error, parse_payload

DIGEST = "sha256:" + "0123456789abcdef" * 4
# The image of issue 14: accepted (201), then Docker refused it and the workflow worker died.
ISSUE_IMAGE = "a" * 300


def refusal(image: str) -> dict[str, str]:
    """The API's field errors for a CONTAINER payload with this image."""
    with pytest.raises(InvalidFieldsError) as caught:
        parse_payload(WorkflowKind.CONTAINER, {"image": image})
    return {e.field: e.message for e in caught.value.errors}


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "local/busybox:latest",
        "local/python:3.11",
        "registry.example.com:5000/team/app:v1.2",
        "localhost/app",
        "localhost:5000/team/app:1",
        "127.0.0.1:5000/app",
        "Registry.Example.com/app",  # a host name is not case-sensitive; the path is
        f"local/busybox@{DIGEST}",
        f"local/busybox:latest@{DIGEST}",
        "my_app-x.y:TAG_1",
        "a__b/c---d",
        "app:" + "t" * 128,
        "a" * 237,  # docker.io/library/ + 237 = 255
        "team/" + "a" * 240,  # docker.io/ + 245 = 255
        "registry.example.com/" + "a" * 234,  # 255 as written
        "0123456789abcdef" * 4,  # an image ID: Docker looks it up as one
        "0_0.0/app",  # not a host name, so Docker takes it for a path component
    ],
)
def test_references_docker_takes_are_accepted(image: str) -> None:
    assert image_reference_error(image) is None
    assert parse_payload(WorkflowKind.CONTAINER, {"image": image}).to_json()["image"] == image


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            ISSUE_IMAGE,
            "the repository name is 318 characters long as Docker counts it, with the "
            "'docker.io/library/' it implies; Docker allows at most 255",
        ),
        (
            "a" * 238,
            "the repository name is 256 characters long as Docker counts it, with the "
            "'docker.io/library/' it implies; Docker allows at most 255",
        ),
        (
            "team/" + "a" * 241,
            "the repository name is 256 characters long as Docker counts it, with the "
            "'docker.io/' it implies; Docker allows at most 255",
        ),
        (
            "registry.example.com/" + "a" * 235,
            "the repository name is 256 characters long; Docker allows at most 255",
        ),
        ("Busybox", "the repository name must be lower case: 'Busybox'"),
        ("local/BusyBox:latest", "the repository name must be lower case: 'BusyBox'"),
        (
            "local/busybox:bad!tag",
            "the tag 'bad!tag' must be 1 to 128 letters, digits, '_', '.' or '-', "
            "and not start with '.' or '-'",
        ),
        ("local/busybox:.hidden", "the tag '.hidden' must be 1 to 128"),
        ("local/busybox:", "the tag '' must be 1 to 128"),
        ("app:" + "t" * 129, "the tag 'tttttttttt"),
        (
            "local/busybox@sha256:" + "a" * 63,
            "the digest after '@' must be 'sha256:' followed by 64 lower-case hex digits",
        ),
        ("local/busybox@sha256:" + "A" * 64, "the digest after '@' must be 'sha256:'"),
        ("local/busybox@md5:" + "a" * 32, "the digest after '@' must be 'sha256:'"),
        ("bad_host.example:5000/app", "the registry 'bad_host.example:5000' must be a host"),
        ("registry:port/app", "the registry 'registry:port' must be a host"),
        ("a b", "the path component 'a b' must be lower-case letters and digits"),
        ("-lead", "the path component '-lead' must be"),
        ("team//app", "the path component '' must be"),
        (":tag", "the path component '' must be"),
        ("", "must be an image reference like 'busybox'"),
    ],
)
def test_references_docker_refuses_are_a_422_on_payload_image(image: str, message: str) -> None:
    assert (error := image_reference_error(image)) is not None and error.startswith(message)
    found = refusal(image)
    assert list(found) == ["payload.image"] and found["payload.image"].startswith(message)


def test_the_image_of_the_issue_is_refused_and_the_message_is_short() -> None:
    message = refusal(ISSUE_IMAGE)["payload.image"]
    assert "255" in message and ISSUE_IMAGE not in message
    for image in ("app:" + "t" * 400, "a" * 1000):  # a long value is not echoed back whole
        assert len(refusal(image)["payload.image"]) < 200


# --- the OpenAPI document says the same (its pattern cannot count the name's length) -----------

PATTERN = re.compile(payloads._IMAGE.pattern)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(PATTERN, fullmatch=True).filter(lambda s: len(s) <= MAX_IMAGE_REFERENCE))
def test_what_the_document_allows_is_refused_only_for_its_length(image: str) -> None:
    error = image_reference_error(image)
    assert error is None or error.startswith("the repository name is"), (image, error)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="aZ09._-:/@sh", max_size=40))
def test_what_the_code_accepts_the_document_allows(image: str) -> None:
    if image_reference_error(image) is None:
        assert PATTERN.fullmatch(image) and len(image) <= MAX_IMAGE_REFERENCE
