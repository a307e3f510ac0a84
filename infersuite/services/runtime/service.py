"""What a model family is to the runtime, and how families are found: by convention, never by a list.

A family is a package `infersuite/services/<name>/` whose `SERVICE` attribute is a `ServiceModule`:

    name                      the family's name (its package name; INFERSUITE_SERVICES selects by it)
    grpc_service_names        its gRPC services, each also a grpc.health entry
    required_models(repo)     the models its requests need, read from the repository at call time (a
                              family may derive the list from a model's meta.json, as segmentation
                              does from its backbone's); the runtime loads them in every model-control
                              mode and asks again on every load, unload and reload
    register(server, runtime) adds its servicers; a family that derives state from its models
                              (vocabularies, codec tables, pipelines) hands `runtime.service_models`
                              its `derive`, Triton's initialize: called on every new model set before
                              it serves (start-up, polling, explicit load: one transaction,
                              infersuite/services/runtime/reload.py), refusing the set by raising; and optionally
                              its `finalize(state)`, Triton's finalize (default: nothing): called with
                              a replaced set's state once its last request is done, and with the
                              serving one's at stop, before the models close (infersuite/services/runtime/lifecycle.py)

Every family, and every layer's part of it (exporters, loadtest generators, dashboards, deploy
files), is discovered by its package or file name: adding a family is adding its packages
(docs/families.md has the checklist).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from infersuite.services.families import PACKAGE, family_names

if TYPE_CHECKING:
    from infersuite.services.runtime.handler_wrapper import HandlerRegistry
    from infersuite.services.runtime.repository import ModelRepository
    from infersuite.services.runtime.server import Runtime

ALL = "*"  # INFERSUITE_SERVICES: every family found


class ServiceModule(Protocol):
    """What a family package exposes as `SERVICE`."""

    name: str
    grpc_service_names: tuple[str, ...]

    def required_models(self, repository: ModelRepository) -> list[str]: ...

    def register(self, server: HandlerRegistry, runtime: Runtime) -> None: ...


def discover_services() -> list[str]:
    """The family packages under `infersuite/services/` (sorted; infersuite/services/families.py lists them
    without importing) that expose `SERVICE`."""
    return [name for name in family_names() if hasattr(importlib.import_module(f"{PACKAGE}.{name}"), "SERVICE")]


def load_services(names: Sequence[str]) -> list[ServiceModule]:
    """The `SERVICE` of each named family ("*" = every family found)."""
    if ALL in names:
        names = discover_services()
    services = []
    for name in names:
        try:
            module = importlib.import_module(f"{PACKAGE}.{name}")
        except ModuleNotFoundError:
            raise ValueError(f"unknown service {name!r} (families here: {', '.join(discover_services())})") from None
        services.append(module.SERVICE)
    return services
