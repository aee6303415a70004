"""Every module says in its first line what it is for (generated code aside)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("chronoverse", "services", "bench", "scripts")
GENERATED = ROOT / "chronoverse" / "v1"


def modules() -> list[Path]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if GENERATED in path.parents:
                continue
            if path.name == "__init__.py" and not path.read_text().strip():
                continue  # an empty package marker says nothing and needs nothing
            found.append(path)
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_module_says_what_it_is_for(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring, f"{path.relative_to(ROOT)} has no module docstring"
    first = docstring.strip().splitlines()[0]
    assert len(first) >= 15, f"{path.relative_to(ROOT)}: {first!r} says too little"
