"""The import rules of docs/architecture.md, checked on the source of every module.

The engine (``mhst_tracker.domain``) imports nothing of the tracker's outside itself and no
I/O library; ``mhst_tracker`` never imports ``streams`` or Faust (the Faust wiring depends
on the package, never the other way round).
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mhst_tracker"
DOMAIN = PACKAGE / "domain"
IO_LIBRARIES = ("aiokafka", "faust", "sqlalchemy", "alembic", "asyncpg", "prometheus_client")


def imported_modules(path: Path) -> Iterator[str]:
    """Every module a source file imports, at any depth of its code."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def violations(root: Path, forbidden: tuple[str, ...]) -> list[str]:
    """``file: module`` for each import of a forbidden package under ``root``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for module in imported_modules(path):
            if module.split(".")[0] in forbidden or module in forbidden:
                found.append(f"{path.relative_to(root.parent)}: {module}")
    return found


def test_the_package_never_imports_streams_or_faust() -> None:
    assert violations(PACKAGE, ("streams", "faust", "mode")) == []


def test_the_engine_imports_no_io_library_and_no_adapter() -> None:
    assert violations(DOMAIN, IO_LIBRARIES) == []
    inward = [
        f"{path.name}: {module}"
        for path in sorted(DOMAIN.rglob("*.py"))
        for module in imported_modules(path)
        if module.startswith("mhst_tracker.") and not module.startswith("mhst_tracker.domain")
    ]
    assert inward == []


@pytest.mark.parametrize("forbidden", [("faust",), ("sqlalchemy",), ("aiokafka",)])
def test_the_checker_finds_a_forbidden_import(tmp_path: Path, forbidden: tuple[str, ...]) -> None:
    package = tmp_path / "package"
    package.mkdir()
    (package / "module.py").write_text(f"def f() -> None:\n    import {forbidden[0]}.x\n")
    assert violations(package, forbidden) == [f"package/module.py: {forbidden[0]}.x"]
