"""The docs tell the truth: generated documents match their code, and api.md states every limit."""

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from chronoverse import payloads
from services.server.schemas import (
    Credentials,
    MarkReadIn,
    NotificationQuery,
    ProfileUpdate,
    WorkflowUpdate,
)

ROOT = Path(__file__).resolve().parents[2]


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


@pytest.mark.parametrize("path", sorted(GEN.OUTPUTS), ids=lambda p: p.name)
def test_generated_doc_is_current(path: Path) -> None:
    assert path.read_text() == GEN.OUTPUTS[path](), f"{path.name} is stale: run `make docs`"


def test_configuration_lists_every_setting() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for _, model in GEN.COMPONENTS:
        for name in model.model_fields:
            assert f"`CHRONOVERSE_{name.upper()}`" in text


# --- docs/api.md states every limit the validators enforce ---------------------------------------

API = (ROOT / "docs" / "api.md").read_text()
_BOUNDS = (
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "maxProperties",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
)
# Each model's fields are documented under a heading: in a table row `| \`<prefix><field>\` |`,
# or in the section's prose (prefix None).
PLACES: list[tuple[type[BaseModel], str, str | None]] = [
    (Credentials, "## Authentication", None),
    (WorkflowUpdate, "## Workflows", ""),  # the same fields as WorkflowCreate, a plain schema
    (payloads.HeartbeatPayload, "### HEARTBEAT payload", ""),
    (payloads.ContainerPayload, "### CONTAINER payload", ""),
    (payloads.ContainerResources, "### CONTAINER payload", "resources."),
    (payloads.VolumeMount, "## Volumes", None),
    (MarkReadIn, "## Notifications", None),
    (NotificationQuery, "## Notifications", None),
    (ProfileUpdate, "## Notifications", None),
]
# Limits that validators check in code rather than in the schema, and the rows that state them.
VALIDATOR_LIMITS = {
    "MAX_PAYLOAD_BYTES": ("## Workflows", ["payload"]),
    "MAX_ARGV_BYTES": ("### CONTAINER payload", ["command", "args"]),
    "MAX_ENV_BYTES": ("### CONTAINER payload", ["env"]),
    "MAX_IMAGE_NAME": ("### CONTAINER payload", ["image"]),
    "MAX_IMAGE_TAG": ("### CONTAINER payload", ["image"]),
}


def _section(heading: str) -> str:
    """The text under a heading of docs/api.md, up to the next heading of its level or above."""
    level = heading.split(" ")[0]
    start = API.index(f"\n{heading}\n")
    ends = [API.find(f"\n{'#' * n} ", start + 1) for n in range(1, len(level) + 1)]
    return API[start : min([end for end in ends if end != -1], default=len(API))]


def _row(heading: str, field: str) -> str:
    rows = [row for row in _section(heading).splitlines() if row.startswith(f"| `{field}` |")]
    assert len(rows) == 1, f"docs/api.md has no row for `{field}` under {heading!r}"
    return rows[0]


def _bounds(schema: dict[str, Any]) -> set[float]:
    """Every numeric bound of a field's JSON schema, through anyOf, items and values."""
    found = {schema[key] for key in _BOUNDS if key in schema}
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found |= _bounds(schema[key])
    for option in schema.get("anyOf", []):
        found |= _bounds(option)
    return found


def _stated(value: object, text: str) -> bool:
    """Whether ``text`` gives ``value`` as a number (4096, 4,096 or 4 KiB), word or JSON."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        spellings = {value if isinstance(value, str) else json.dumps(value)}
    else:
        spellings = {repr(value)}
        if float(value).is_integer():
            n = int(value)
            spellings |= {str(n), f"{n:,}"} | ({f"{n // 1024} KiB"} if n % 1024 == 0 else set())
    # A number is not part of a longer one: "4" is not in "4,096", nor "96" in it.
    pattern = r"(?<![\w.])(?<!\d,){}(?!\w|[,.]\d)"
    return any(re.search(pattern.format(re.escape(s)), text) for s in spellings if s)


FIELDS = [
    (model, field, heading, prefix)
    for model, heading, prefix in PLACES
    for field in model.model_json_schema()["properties"]
]


@pytest.mark.parametrize(
    ("model", "field", "heading", "prefix"),
    FIELDS,
    ids=[f"{model.__name__}.{field}" for model, field, _, _ in FIELDS],
)
def test_api_md_states_each_limit_and_default_of_a_field(
    model: type[BaseModel], field: str, heading: str, prefix: str | None
) -> None:
    schema = model.model_json_schema()["properties"][field]
    default = schema.get("default")
    stated = [] if default is None or prefix is None else [default]
    expected = sorted(_bounds(schema)) + stated
    if not expected:
        return
    text = _section(heading) if prefix is None else _row(heading, prefix + field)
    missing = [value for value in expected if not _stated(value, text)]
    assert not missing, f"docs/api.md does not state {missing} for {field}: {text}"


@pytest.mark.parametrize("name", sorted(VALIDATOR_LIMITS))
def test_api_md_states_the_limits_validators_check(name: str) -> None:
    heading, fields = VALIDATOR_LIMITS[name]
    for field in fields:
        assert _stated(getattr(payloads, name), _row(heading, field)), (name, field)


def test_every_payload_limit_constant_is_checked_against_the_docs() -> None:
    in_schemas = set().union(
        *(
            _bounds(s)
            for model, _, _ in PLACES
            for s in model.model_json_schema()["properties"].values()
        )
    )
    unchecked = [
        name
        for name, value in vars(payloads).items()
        if name.startswith("MAX_") and name not in VALIDATOR_LIMITS and value not in in_schemas
    ]
    assert not unchecked, f"add these to VALIDATOR_LIMITS (and docs/api.md): {unchecked}"
