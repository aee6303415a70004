"""Workflow payloads: what a HEARTBEAT checks and what a CONTAINER runs, validated strictly.

Pure: no I/O. :func:`parse_payload` turns the raw ``payload`` of an API request (a JSON object,
or a JSON string holding one, as the original Chronoverse API sent it) into a frozen, typed value,
or raises :class:`InvalidFieldsError` naming every bad field as ``payload.<path>``.

Limits (also in docs/api.md):

- a payload is at most 64 KiB of JSON;
- HEARTBEAT ``headers``: at most 50, names are HTTP tokens, values at most 4 KiB without CR/LF;
- CONTAINER ``env``: at most 100 entries, names ``[A-Za-z_][A-Za-z0-9_]*``, 32 KiB in all;
- ``command`` and ``args``: at most 256 items each, 16 KiB in all.
- CONTAINER ``image``: Docker's reference grammar (:func:`image_reference_error`), a name of at
  most 255 characters as Docker counts it.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from chronoverse.domain import WorkflowKind
from chronoverse.errors import FieldError, InvalidFieldsError
from chronoverse.settings import ContainerSettings

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_HEADERS = 50
MAX_ENV_ENTRIES = 100
MAX_ENV_BYTES = 32 * 1024
MAX_ARGV_ITEMS = 256
MAX_ARGV_BYTES = 16 * 1024
# Docker's own limits on an image reference (distribution/reference): the repository name, counted
# with the registry Docker implies, and the tag; the digest is sha256's 64 hex digits.
MAX_IMAGE_NAME = 255
MAX_IMAGE_TAG = 128
MAX_IMAGE_REFERENCE = MAX_IMAGE_NAME + 1 + MAX_IMAGE_TAG + len("@sha256:") + 64

DEFAULT_CONTAINER_TIMEOUT_S = 3600
MAX_CONTAINER_TIMEOUT_S = 24 * 3600
DEFAULT_MEMORY_MB = 256
DEFAULT_CPUS = 1.0
DEFAULT_PIDS = 256
MAX_VOLUMES = 64
VOLUME_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
# Mounting over these would break the container or hide the tmpfs the sandbox gives it.
RESERVED_PATHS = ("/proc", "/sys", "/dev", "/tmp")

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What the OpenAPI document says of rules checked in code below: every string the document allows
# must pass them (a pattern ends the string at `$`, as JSON Schema's does, not before a newline).
_NOT_SPACE = r"[^\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# A host name whose last label starts with a letter is never an IP literal, which the egress
# policy checks at creation; an IP literal it allows is accepted too but not described.
ENDPOINT_PATTERN = (
    rf"^[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*(?::{_PORT})?"
    rf"(?:[/?#]{_NOT_SPACE}*)?$"
)
# A webhook's URL: the same, without a #fragment (chronoverse.webhooks.url_problem).
WEBHOOK_URL_PATTERN = (
    rf"^[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9-]+\.)*[A-Za-z][A-Za-z0-9-]*(?::{_PORT})?"
    r"(?:[/?][^\x00-\x20\x7f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000#]*)?$"
)
NORMAL_PATH_PATTERN = r"^(?:/(?:[^/.\x00][^/\x00]*|\.[^/.\x00][^/\x00]*|\.\.[^/\x00]+))+/?$"
NO_NUL_PATTERN = r"^[^\x00]*$"
# Docker's reference grammar: [registry/]path[:tag][@digest], lower-case path components. The
# first component is a registry only if it looks like a host: has a dot or a port, or is localhost.
_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_REGISTRY = (
    rf"(?:localhost(?::[0-9]+)?|{_HOST_PART}(?:\.{_HOST_PART})+(?::[0-9]+)?|{_HOST_PART}:[0-9]+)"
)
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST_PART = r"sha256:[0-9a-f]{64}"
# The OpenAPI pattern; the name's length, which a pattern cannot count, is checked in code.
_IMAGE = re.compile(
    rf"^(?:{_REGISTRY}/)?{_PATH_PART}(?:/{_PATH_PART})*(?::{_TAG_PART})?(?:@{_DIGEST_PART})?$"
)
_DOMAIN = re.compile(rf"{_HOST_PART}(?:\.{_HOST_PART})*(?::[0-9]+)?")
_PATH_COMPONENT = re.compile(_PATH_PART)
_TAG = re.compile(_TAG_PART)
_DIGEST = re.compile(_DIGEST_PART)

Text = Annotated[
    str, StringConstraints(max_length=4096), Field(json_schema_extra={"pattern": NO_NUL_PATTERN})
]


def _integral(value: object) -> object:
    # JSON does not tell 34.0 from 34, and JSON Schema calls both integers.
    return int(value) if isinstance(value, float) and value.is_integer() else value


JSON_INTEGER = BeforeValidator(_integral)
"""Makes an int take an integer as JSON Schema means one: 34 or 34.0, never 34.5, "34" or true.
In an ``Annotated`` with constraints, put it after them (else the schema misnames them)."""
JsonInt = Annotated[int, JSON_INTEGER]
Endpoint = Annotated[str, Field(max_length=2048, json_schema_extra={"pattern": ENDPOINT_PATTERN})]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def to_json(self) -> dict[str, Any]:
        """The stored form: every field, defaults included, without ``kind``."""
        return self.model_dump(mode="json", exclude={"kind"})


def is_liveness(kind: str, payload: object) -> bool:
    """A liveness job: a HEARTBEAT whose payload has no endpoint (or a null one), nothing to run.

    The one definition in Python; the SQL function ``chronoverse_is_liveness``
    (migrations/0006_liveness.sql) is the same predicate for queries, and a test checks they agree.
    """
    if kind != WorkflowKind.HEARTBEAT:
        return False
    return not isinstance(payload, Mapping) or payload.get("endpoint") is None


class HeartbeatPayload(_Payload):
    """Empty: a liveness job. With ``endpoint``: an HTTP request whose status is compared."""

    kind: Literal["HEARTBEAT"] | None = None
    endpoint: Endpoint | None = Field(
        None,
        description="An http:// or https:// URL. A host that is an IP literal must be an "
        "address the egress policy allows (public, or in CHRONOVERSE_EGRESS_ALLOW_CIDRS).",
    )
    method: Literal["GET", "HEAD"] = "GET"
    expected_status_code: JsonInt = Field(200, ge=100, le=599)
    timeout_seconds: float = Field(10, gt=0, le=300)
    headers: dict[
        str,
        Annotated[
            str,
            StringConstraints(max_length=4096),
            Field(json_schema_extra={"pattern": r"^[^\r\n\x00]*$"}),
        ],
    ] = Field(
        default_factory=dict,
        max_length=MAX_HEADERS,
        json_schema_extra={"propertyNames": {"pattern": _HEADER_NAME.pattern}},
    )

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if any(c.isspace() for c in value):
            raise ValueError("must not contain whitespace")
        return value

    @field_validator("headers")
    @classmethod
    def _header_fields(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP token")
            if "\r" in header or "\n" in header:
                raise ValueError(f"header {name!r} contains a line break")
        return value

    @property
    def is_liveness(self) -> bool:
        return is_liveness(WorkflowKind.HEARTBEAT, {"endpoint": self.endpoint})

    def to_json(self) -> dict[str, Any]:
        return {} if self.is_liveness else super().to_json()

    def missing_endpoint(self) -> FieldError | None:
        """HTTP options without an endpoint are a mistake, not a liveness job."""
        configured = self.model_fields_set - {"kind", "endpoint"}
        if self.endpoint is None and configured:
            return FieldError(
                "payload.endpoint",
                f"is required when {', '.join(sorted(configured))} is given "
                "(an empty payload is a liveness job)",
            )
        return None


class ContainerResources(_Payload):
    memory_mb: JsonInt = Field(DEFAULT_MEMORY_MB, ge=6, le=65536)
    cpus: float = Field(DEFAULT_CPUS, gt=0, le=64)
    pids: JsonInt = Field(DEFAULT_PIDS, ge=8, le=32768)


class VolumeMount(_Payload):
    """A named volume of the workflow's owner, mounted at ``path``: it outlives the job."""

    name: str = Field(
        pattern=VOLUME_NAME_PATTERN,
        description="The volume's name among the owner's volumes (lower case, digits, `_.-`).",
    )
    path: str = Field(
        max_length=1024,
        description="Absolute, normalised path in the container; not / and not under "
        + ", ".join(RESERVED_PATHS)
        + ".",
        json_schema_extra={
            "pattern": NORMAL_PATH_PATTERN,
            "not": {"pattern": rf"^(?:{'|'.join(RESERVED_PATHS)})(?:/|$)"},
        },
    )
    read_only: bool = False

    @field_validator("path")
    @classmethod
    def _mount_path(cls, value: str) -> str:
        if not value.startswith("/") or "\x00" in value:
            raise ValueError("must be an absolute path")
        normal = posixpath.normpath(value)
        if normal != value.rstrip("/") or "//" in value:
            raise ValueError(f"must be a normalised path (e.g. {normal!r})")
        if normal == "/" or any(
            normal == reserved or normal.startswith(reserved + "/") for reserved in RESERVED_PATHS
        ):
            raise ValueError(f"must not be / or under {', '.join(RESERVED_PATHS)}")
        return normal


class ContainerPayload(_Payload):
    """A Docker image to run with its command, args, env, working dir and limits."""

    kind: Literal["CONTAINER"] | None = None
    image: str = Field(
        max_length=MAX_IMAGE_REFERENCE,
        description="A Docker image reference: [registry[:port]/]path[:tag][@sha256:digest]. "
        f"Its name, with the `docker.io/` (and `library/`) Docker implies, is at most "
        f"{MAX_IMAGE_NAME} characters.",
        json_schema_extra={"pattern": _IMAGE.pattern},
    )
    command: list[Text] | None = Field(
        None, max_length=MAX_ARGV_ITEMS, description=f"At most {MAX_ARGV_BYTES} bytes in all."
    )
    args: list[Text] = Field(
        default_factory=list,
        max_length=MAX_ARGV_ITEMS,
        description=f"At most {MAX_ARGV_BYTES} bytes in all.",
    )
    env: dict[
        str,
        Annotated[
            str,
            StringConstraints(max_length=MAX_ENV_BYTES),
            Field(json_schema_extra={"pattern": NO_NUL_PATTERN}),
        ],
    ] = Field(
        default_factory=dict,
        max_length=MAX_ENV_ENTRIES,
        description=f"At most {MAX_ENV_BYTES} bytes in all, counting `NAME=value` and a NUL each.",
        json_schema_extra={"propertyNames": {"pattern": _ENV_NAME.pattern}},
    )
    working_dir: (
        Annotated[
            str,
            Field(
                max_length=1024,
                json_schema_extra={
                    "pattern": NORMAL_PATH_PATTERN,
                    "not": {"pattern": r"^/(?:proc|sys|dev)(?:/|$)"},
                },
            ),
        ]
        | None
    ) = Field(None, description="Absolute, normalised path; not under /proc, /sys or /dev.")
    timeout_seconds: JsonInt = Field(DEFAULT_CONTAINER_TIMEOUT_S, ge=1, le=MAX_CONTAINER_TIMEOUT_S)
    resources: ContainerResources = Field(default_factory=ContainerResources)
    network: str | None = Field(
        None,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="A network the operator allows (CHRONOVERSE_CONTAINER_NETWORKS); "
        "default: the first of them. Never `host`.",
    )
    pull_policy: Literal["if-not-present", "always", "never"] = "if-not-present"
    volumes: list[VolumeMount] = Field(
        default_factory=list,
        max_length=MAX_VOLUMES,
        description="Each name and each path at most once. A user has at most "
        "CHRONOVERSE_MAX_VOLUMES_PER_USER volumes in all (409 `volume_quota_exceeded`).",
    )

    @field_validator("volumes")
    @classmethod
    def _distinct_volumes(cls, value: list[VolumeMount]) -> list[VolumeMount]:
        names = [v.name for v in value]
        paths = [v.path for v in value]
        if len(set(names)) != len(names):
            raise ValueError("each volume name may appear once")
        if len(set(paths)) != len(paths):
            raise ValueError("each path may be mounted once")
        return value

    @field_validator("image")
    @classmethod
    def _image_reference(cls, value: str) -> str:
        if (error := image_reference_error(value)) is not None:
            raise ValueError(error)
        return value

    @field_validator("command", "args")
    @classmethod
    def _argv(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if any("\x00" in item for item in value):
                raise ValueError("must not contain NUL characters")
            if sum(len(item.encode()) for item in value) > MAX_ARGV_BYTES:
                raise ValueError(f"must total at most {MAX_ARGV_BYTES} bytes")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, item in value.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"variable name {name!r} must match [A-Za-z_][A-Za-z0-9_]*")
            if "\x00" in item:
                raise ValueError(f"variable {name!r} contains a NUL character")
        size = sum(len(k.encode()) + len(v.encode()) + 2 for k, v in value.items())
        if size > MAX_ENV_BYTES:
            raise ValueError(f"must total at most {MAX_ENV_BYTES} bytes, got {size}")
        return value

    @field_validator("working_dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("/") or "\x00" in value:
            raise ValueError("must be an absolute path")
        normal = posixpath.normpath(value)
        if normal != value.rstrip("/") or "//" in value:
            raise ValueError(f"must be a normalised path (e.g. {normal!r})")
        if any(normal == p or normal.startswith(p + "/") for p in ("/proc", "/sys", "/dev")):
            raise ValueError("must not be under /proc, /sys or /dev")
        return value


Payload = HeartbeatPayload | ContainerPayload


def image_reference_error(reference: str) -> str | None:
    """Why Docker would refuse ``reference`` as an image, in words for its author; None if not.

    Docker's grammar (distribution/reference): ``[registry/]path[:tag][@digest]``. The first
    component is a registry only when it looks like a host (a dot, a port, or ``localhost``);
    path components are lower case. Docker counts the name with the registry it implies
    (``docker.io/``, and ``library/`` for a one-component path) against its 255 characters.
    """
    example = "like 'busybox', 'team/app:1.2' or 'registry.example.com:5000/app@sha256:…'"
    if not reference:
        return f"must be an image reference {example}"
    rest, at, digest = reference.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        return "the digest after '@' must be 'sha256:' followed by 64 lower-case hex digits"
    name, tag = rest, None
    if rest.rfind(":") > rest.rfind("/"):
        name, _, tag = rest.rpartition(":")
    if tag is not None and not _TAG.fullmatch(tag):
        return (
            f"the tag {_shown(tag)} must be 1 to {MAX_IMAGE_TAG} letters, digits, '_', '.' or "
            "'-', and not start with '.' or '-'"
        )
    first, slash, remainder = name.partition("/")
    domain, path = "docker.io", name
    if slash and ("." in first or ":" in first or first == "localhost"):
        # Docker takes it for a registry; one that is no host name still parses as a path.
        if not (_DOMAIN.fullmatch(first) or _PATH_COMPONENT.fullmatch(first)):
            return (
                f"the registry {_shown(first)} must be a host name or address, optionally "
                "with a :port"
            )
        domain, path = first, remainder
    for component in path.split("/"):
        if _PATH_COMPONENT.fullmatch(component):
            continue
        if _PATH_COMPONENT.fullmatch(component.lower()):
            return f"the repository name must be lower case: {_shown(component)}"
        return (
            f"the path component {_shown(component)} must be lower-case letters and digits, "
            f"separated by '.', '_', '__' or '-'; an image reference is {example}"
        )
    if domain == "index.docker.io":
        domain = "docker.io"
    if domain == "docker.io" and "/" not in path:
        path = f"library/{path}"
    normalized = f"{domain}/{path}"
    counted = max(len(name), len(normalized))
    if counted > MAX_IMAGE_NAME:
        implied = (
            ""
            if counted == len(name)
            else f" as Docker counts it, with the '{normalized.removesuffix(name)}' it implies"
        )
        return (
            f"the repository name is {counted} characters long{implied}; Docker allows at most "
            f"{MAX_IMAGE_NAME}"
        )
    return None


def _shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message, cut short if long."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"


@dataclass(frozen=True, kw_only=True)
class ContainerPolicy:
    """The operator's bounds on what a CONTAINER payload may ask for (ContainerSettings)."""

    networks: tuple[str, ...] = ("none",)
    max_memory_mb: int = 2048
    max_cpus: float = 2.0
    max_pids: int = 1024
    max_timeout_s: int = 6 * 3600
    max_volumes: int = 4

    @classmethod
    def from_settings(cls, settings: ContainerSettings) -> ContainerPolicy:
        return cls(
            networks=settings.container_network_list,
            max_memory_mb=settings.container_max_memory_mb,
            max_cpus=settings.container_max_cpus,
            max_pids=settings.container_max_pids,
            max_timeout_s=settings.container_max_timeout_s,
            max_volumes=settings.container_max_volumes,
        )

    @property
    def default_network(self) -> str:
        return self.networks[0]

    def network_of(self, payload: ContainerPayload) -> str:
        return payload.network if payload.network is not None else self.default_network

    def violations(self, payload: ContainerPayload) -> list[FieldError]:
        """Every field above a ceiling or outside what the operator allows, named."""
        errors = []
        network = self.network_of(payload)
        if network not in self.networks:
            errors.append(
                FieldError(
                    "payload.network",
                    f"{network!r} is not allowed; allowed: {', '.join(self.networks)}",
                )
            )
        resources = payload.resources
        for field, value, ceiling in (
            ("payload.resources.memory_mb", resources.memory_mb, self.max_memory_mb),
            ("payload.resources.cpus", resources.cpus, self.max_cpus),
            ("payload.resources.pids", resources.pids, self.max_pids),
            ("payload.timeout_seconds", payload.timeout_seconds, self.max_timeout_s),
        ):
            if value > ceiling:
                errors.append(FieldError(field, f"is {value:g}, above the ceiling of {ceiling:g}"))
        if len(payload.volumes) > self.max_volumes:
            errors.append(
                FieldError(
                    "payload.volumes",
                    f"has {len(payload.volumes)} volumes, above the ceiling of {self.max_volumes}",
                )
            )
        return errors


DEFAULT_POLICY = ContainerPolicy()
_MODELS: dict[WorkflowKind, type[HeartbeatPayload] | type[ContainerPayload]] = {
    WorkflowKind.HEARTBEAT: HeartbeatPayload,
    WorkflowKind.CONTAINER: ContainerPayload,
}


def parse_payload(
    kind: WorkflowKind, raw: object, policy: ContainerPolicy = DEFAULT_POLICY
) -> Payload:
    """Validate a raw payload for ``kind`` within the operator's ``policy``; raise
    InvalidFieldsError naming each bad field."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidFieldsError(
                [FieldError("payload", f"is not valid JSON: {exc.msg}")]
            ) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidFieldsError([FieldError("payload", "must be a JSON object")])
    if len(json.dumps(raw)) > MAX_PAYLOAD_BYTES:
        raise InvalidFieldsError(
            [FieldError("payload", f"must be at most {MAX_PAYLOAD_BYTES} bytes")]
        )
    if nul := _find_nul(raw, "payload"):
        # Postgres cannot store NUL in text or jsonb; say so instead of failing later.
        raise InvalidFieldsError([FieldError(nul, "must not contain NUL (\\u0000) characters")])
    if raw.get("kind") not in (None, kind.value):
        raise InvalidFieldsError(
            [
                FieldError(
                    "payload.kind", f"is {raw['kind']!r} but the workflow kind is {kind.value}"
                )
            ]
        )
    try:
        payload = _MODELS[kind].model_validate(raw)
    except ValidationError as exc:
        raise InvalidFieldsError(field_errors(exc, prefix="payload")) from exc
    if isinstance(payload, HeartbeatPayload) and (error := payload.missing_endpoint()):
        raise InvalidFieldsError([error])
    if isinstance(payload, ContainerPayload):
        if errors := policy.violations(payload):
            raise InvalidFieldsError(errors)
        if payload.network is None:  # stored as the network it runs on, as responses show it
            payload = payload.model_copy(update={"network": policy.default_network})
    return payload


def _find_nul(value: object, path: str) -> str | None:
    """The dotted path of the first string (key or value) holding a NUL character, if any."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in str(key):
                return f"{path}.{key!r}"
            if found := _find_nul(item, f"{path}.{key}"):
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if found := _find_nul(item, f"{path}.{index}"):
                return found
    return None


def field_errors(exc: ValidationError, *, prefix: str = "") -> list[FieldError]:
    """pydantic's errors as (dotted field, message) pairs."""
    errors = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"])
        field = ".".join(p for p in (prefix, path) if p)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "is not a known field"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        errors.append(FieldError(field or prefix or "body", message))
    return errors
