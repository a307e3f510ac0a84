"""The tiny-model fixtures are session fixtures registered once (tests/conftest.py pytest_plugins).
A test module that imports one (`from tests.fixtures_audio import tiny_audio`) gets its own copy
of the fixture, and the model is trained again for that module: this keeps that from coming back."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
PLUGINS = {"tests.fixtures_audio", "tests.fixtures_segmentation", "tests.fixtures_splitcompute"}


def _imported_plugin_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module in PLUGINS:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in PLUGINS)
    return found


def test_no_test_module_imports_a_fixture_plugin() -> None:
    offenders = {str(path.relative_to(TESTS)): sorted(mods) for path in TESTS.rglob("*.py")
                 if (mods := _imported_plugin_modules(path))}
    assert offenders == {}, f"use the session fixture by name (tests/conftest.py registers it): {offenders}"


def test_the_conftest_registers_every_plugin() -> None:
    import tests.conftest as conftest

    assert set(conftest.pytest_plugins) == PLUGINS
