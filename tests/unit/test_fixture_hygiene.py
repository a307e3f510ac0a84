"""The tiny-model fixtures are session fixtures registered once (tests/conftest.py pytest_plugins).
A test module that imports one (`from tests.fixtures_audio import tiny_audio`) gets its own copy
of the fixture, and the model is trained again for that module: this keeps that from coming back,
including the dynamic form (`globals()["tiny_audio"] = getattr(module, "tiny_audio")`) that a plain
import check cannot see."""

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


def _rebinds_module_names(tree: ast.AST) -> list[int]:
    """Lines that bind names into a module's namespace dynamically: `globals()[...] = ...`,
    `vars()[...] = ...`, `globals().update(...)`, `setattr(sys.modules[__name__], ...)`. pytest collects
    any fixture found there as the module's own, so a plugin's fixture bound this way is a copy."""
    def namespace(node: ast.AST) -> bool:
        return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {"globals", "vars"}

    def this_module(node: ast.AST) -> bool:  # sys.modules[__name__]
        return (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Name) and node.slice.id == "__name__"
                and isinstance(node.value, ast.Attribute) and node.value.attr == "modules")

    def rebinds(node: ast.AST) -> bool:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] \
            if isinstance(node, ast.AugAssign | ast.AnnAssign) else []
        if any(isinstance(t, ast.Subscript) and namespace(t.value) for t in targets):
            return True
        if not isinstance(node, ast.Call):
            return False
        if isinstance(node.func, ast.Attribute):  # globals().update(...)
            return node.func.attr in {"update", "setdefault", "__setitem__"} and namespace(node.func.value)
        return isinstance(node.func, ast.Name) and node.func.id == "setattr" and bool(node.args) \
            and this_module(node.args[0])

    return [node.lineno for node in ast.walk(tree) if rebinds(node)]


def test_no_test_module_imports_a_fixture_plugin() -> None:
    offenders = {str(path.relative_to(TESTS)): sorted(mods) for path in TESTS.rglob("*.py")
                 if (mods := _imported_plugin_modules(path))}
    assert offenders == {}, f"use the session fixture by name (tests/conftest.py registers it): {offenders}"


def test_the_conftest_registers_every_plugin() -> None:
    import tests.conftest as conftest

    assert set(conftest.pytest_plugins) == PLUGINS


def test_no_test_module_binds_names_into_its_namespace_dynamically() -> None:
    offenders = {str(path.relative_to(TESTS)): lines for path in TESTS.rglob("*.py")
                 if (lines := _rebinds_module_names(ast.parse(path.read_text(), str(path))))}
    assert offenders == {}, f"request the fixture by name instead (pytest finds plugin fixtures): {offenders}"


def test_the_rebinding_check_sees_every_dynamic_form() -> None:
    """The forms the check must catch (the first is what tests/deploy/test_containers.py once did), and
    reads of the namespace it must leave alone."""
    caught = [
        'globals()[f"tiny_{family}"] = getattr(module, f"tiny_{family}")',
        'vars()["tiny_audio"] = module.tiny_audio',
        'globals().update({"tiny_audio": module.tiny_audio})',
        'globals().setdefault("tiny_audio", module.tiny_audio)',
        'setattr(sys.modules[__name__], "tiny_audio", module.tiny_audio)',
        'def f():\n    globals()["tiny_audio"]: object = 1',
    ]
    for source in caught:
        assert _rebinds_module_names(ast.parse(source)), source
    allowed = ['present = "tiny_audio" in globals()', 'fixture = globals()["tiny_audio"]',
               'setattr(config, "name", 1)', 'values = vars(settings)']
    for source in allowed:
        assert not _rebinds_module_names(ast.parse(source)), source
