"""Generated documents must match the code that generates them (run `make docs`)."""

import importlib.util
from pathlib import Path

import pytest

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
