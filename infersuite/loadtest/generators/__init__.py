"""Per-service request generators, found by name (`create("ctr", params)`).

Every module of this package is imported and registers its generators on import; a family's
generator is `infersuite/loadtest/generators/<family>.py` registering the family's name (the families are the
packages under infersuite/services/, infersuite/services/families.py). A module whose protobuf stubs are not generated
yet is not importable: it is listed by `unavailable()` with why, and a family with no generator
by `missing_families()` (`python -m infersuite.loadtest list` prints both), so nothing is left out silently.
"""

from __future__ import annotations

import importlib
import pkgutil

from infersuite.loadtest.generators import base
from infersuite.loadtest.generators.base import GeneratorError, RequestGenerator, RequestPool, register
from infersuite.services.families import family_names

NOT_GENERATORS = frozenset({"base", "oip_layout"})  # helper modules of this package
_UNAVAILABLE: dict[str, str] = {}


def _import_all() -> None:
    for module in pkgutil.iter_modules(__path__):
        if module.name in NOT_GENERATORS or module.name.startswith("_") or module.name in _UNAVAILABLE:
            continue
        try:
            importlib.import_module(f"{__name__}.{module.name}")
        except ModuleNotFoundError as err:  # stubs absent on this checkout (`make protos`)
            if not (err.name or "").startswith(("infersuite.loadtest.generators.", "infersuite.protos")):
                raise
            _UNAVAILABLE[module.name] = f"cannot import {err.name} (run `make protos`)"


def available() -> dict[str, str]:
    """Generator name -> one-line summary (modules added to `__path__` since import included)."""
    _import_all()
    return base.available()


def create(name: str, params: dict[str, str]) -> RequestGenerator:
    _import_all()
    return base.create(name, params)


def unavailable() -> dict[str, str]:
    """Generator module -> why it could not be imported."""
    _import_all()  # picks up modules added to __path__ since (the family checklist test does)
    return dict(_UNAVAILABLE)


def missing_families() -> dict[str, str]:
    """Family -> why it has no request generator."""
    _import_all()
    registered, broken = available(), unavailable()
    return {family: broken.get(family, f"no infersuite/loadtest/generators/{family}.py registering {family!r}")
            for family in family_names() if family not in registered}


_import_all()

__all__ = ["GeneratorError", "RequestGenerator", "RequestPool", "available", "create", "missing_families",
           "register", "unavailable"]
