"""The backend interface. A service handler calls `ModelManager.infer`, which reaches one of
these; batching and a remote (Triton) backend slot in behind the same two methods."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from infersuite.services.runtime.repository import RepositoryModel
from infersuite.services.runtime.tensors import TensorSpec


class LoadedModel(Protocol):
    """A model version ready to run."""

    name: str
    version: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    meta: dict[str, Any]
    instance_count: int

    async def infer(self, inputs: Mapping[str, np.ndarray],
                    outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Runs one (possibly batched) execution; returns `outputs` by name (None: every output).
        A backend may compute and return more than it was asked for, never less."""
        ...

    async def close(self) -> None: ...


class Backend(Protocol):
    async def load(self, model: RepositoryModel) -> LoadedModel: ...
