"""The model families' names, found by convention and read without importing any family.

A family is a package `infersuite/services/<name>/` (infersuite/services/runtime/service.py has the contract and
`discover_services`, which imports each package and keeps those with `SERVICE`). The other layers
(exporters, loadtest generators, deploy files, dashboards, test fixtures) need only the names and
must not import the serving code, so they read them here: a directory listing of the `services`
package path, standard library only. Each layer then finds its own part by module or file name
and refuses, naming the file to write, when a family lacks it (`missing_part`).
"""

from __future__ import annotations

import importlib.util
import pkgutil
import sys
from collections.abc import Iterable

PACKAGE = "infersuite.services"  # the family packages' parent
NOT_FAMILIES = frozenset({"runtime"})  # packages under infersuite/services/ that are not families


class MissingFamilyPart(LookupError):
    """A family that lacks one layer's part (the message names the file to add)."""


def _services_path() -> list[str]:
    """`infersuite.services.__path__` when imported (tests extend it), else its spec's locations (nothing runs)."""
    if PACKAGE in sys.modules:
        return list(sys.modules[PACKAGE].__path__)
    spec = importlib.util.find_spec(PACKAGE)
    return list(spec.submodule_search_locations or []) if spec else []


def family_names() -> list[str]:
    """Every family package under `infersuite/services/`, sorted."""
    names = {m.name for m in pkgutil.iter_modules(_services_path())
             if m.ispkg and m.name not in NOT_FAMILIES and not m.name.startswith("_")}
    return sorted(names)


def missing_part(layer: str, families: Iterable[str], found: Iterable[str], convention: str) -> None:
    """Raises `MissingFamilyPart` when some family has no part in `layer`; `convention` is a format
    string of where that part goes, e.g. "exporters/{family}.py defining build()"."""
    missing = sorted(set(families) - set(found))
    if missing:
        where = "; ".join(convention.format(family=f) for f in missing)
        raise MissingFamilyPart(f"{layer}: no part for {', '.join(missing)} (add {where}; docs/families.md)")
