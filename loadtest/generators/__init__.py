"""Per-service request generators, found by name (`create("ctr", params)`).

Each module registers itself on import. Services whose stubs are not generated yet are
skipped at import time, so the harness works on any checkout.
"""

from __future__ import annotations

import importlib

from loadtest.generators.base import (
    GeneratorError,
    RequestGenerator,
    RequestPool,
    available,
    create,
    register,
)

# Modules whose stubs may be absent on a given checkout are imported leniently.
for _module in ("raw", "ctr", "oip", "segmentation", "splitcompute", "audio"):
    try:
        importlib.import_module(f"loadtest.generators.{_module}")
    except ModuleNotFoundError as _err:
        if not (_err.name or "").startswith(("loadtest.generators.", "protos")):
            raise

__all__ = ["GeneratorError", "RequestGenerator", "RequestPool", "available", "create", "register"]
