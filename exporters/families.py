"""Each family's exporter part, found by module name: `exporters/<family>.py` (or a package).

    build(artifacts, repository, quick) -> Path     trains when no checkpoint exists, exports the
                                                    family's default models (python -m exporters.build)
    seed_configs() -> list                          the default data/training configs whose `seed` the
                                                    shipped manifests record (python -m exporters.ship)
    quant_families(repository, artifacts)           optional: the QuantFamily objects the quantization
        -> list[QuantFamily]                        report measures (a family without it is named as
                                                    not measured, never left out silently)

The families are the packages under infersuite/services/ (infersuite/services/families.py); a family without its
exporter module, or with one lacking `build`/`seed_configs`, is refused with the file to write.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from infersuite.services.families import MissingFamilyPart, family_names, missing_part

if TYPE_CHECKING:
    from exporters.quantize.family import QuantFamily

REQUIRED = ("build", "seed_configs")
CONVENTION = "exporters/{family}.py defining build() and seed_configs()"
Builder = Callable[[Path, Path, bool], Path]


def exporter(family: str) -> ModuleType:
    """`exporters.<family>`, refused when absent or incomplete."""
    try:
        module = importlib.import_module(f"exporters.{family}")
    except ModuleNotFoundError as err:
        if err.name != f"exporters.{family}":
            raise
        missing_part("exporters", [family], [], CONVENTION)
        raise
    lacking = [name for name in REQUIRED if not callable(getattr(module, name, None))]
    if lacking:
        raise MissingFamilyPart(f"exporters: exporters/{family}.py defines no {', '.join(lacking)}() "
                                "(docs/families.md)")
    return module


def builders(families: list[str] | None = None) -> dict[str, Builder]:
    """family -> its `build`, for every family found (or those named)."""
    return {family: exporter(family).build for family in (families or family_names())}


def seed_configs() -> list[Any]:
    """Every family's default data and training configs."""
    return [config for family in family_names() for config in exporter(family).seed_configs()]


def quant_families(repository: Path, artifacts: Path) -> tuple[list[QuantFamily], dict[str, str]]:
    """(what the quantization report measures, {family: why it measures nothing of it})."""
    found: list[QuantFamily] = []
    not_measured: dict[str, str] = {}
    for family in family_names():
        make = getattr(exporter(family), "quant_families", None)
        if make is None:
            not_measured[family] = f"exporters/{family}.py defines no quant_families()"
            continue
        measured = make(repository, artifacts)
        if not measured:
            not_measured[family] = f"its fp32 models or checkpoints are not in {repository} / {artifacts}"
        found += measured
    return found, not_measured
