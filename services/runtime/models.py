"""Loaded models by name: load + warm-up, readiness, and the one `infer` entry point that
records compute time and in-flight requests. Services reach models only through here."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

import numpy as np

from services.runtime.backends.base import Backend, LoadedModel
from services.runtime.errors import NotFound, Unavailable
from services.runtime.metrics import Metrics
from services.runtime.repository import ModelRepository

log = logging.getLogger(__name__)


class ModelManager:
    def __init__(self, repository: ModelRepository, backend: Backend, metrics: Metrics,
                 warmup_runs: int = 2):
        self.repository = repository
        self._backend = backend
        self._metrics = metrics
        self._warmup_runs = warmup_runs
        self._models: dict[str, LoadedModel] = {}
        self._expected: set[str] = set()  # asked to load: loading, loaded or failed

    async def load(self, names: Iterable[str]) -> None:
        """Loads and warms up every named model (latest version)."""
        for name in names:
            if name in self._models:
                continue
            self._expected.add(name)
            self._metrics.model_ready.labels(name).set(0)
            model = await self._backend.load(self.repository.resolve(name))
            await self._warm_up(model)
            self._models[name] = model
            self._metrics.model_ready.labels(name).set(1)

    async def _warm_up(self, model: LoadedModel) -> None:
        # Dynamic dimensions of 2: the exporters never specialise a graph on sizes 0/1.
        inputs = {spec.name: spec.example(dynamic_size=2) for spec in model.inputs}
        for _ in range(self._warmup_runs):
            await model.infer(inputs)

    def get(self, name: str) -> LoadedModel:
        model = self._models.get(name)
        if model is None:
            if name in self._expected or name in self.repository.names():
                raise Unavailable(f"model {name!r} is not loaded (loading, or its load failed: see the server log)")
            raise NotFound(f"model {name!r} is not served here (loaded: {', '.join(self._models) or 'none'})")
        return model

    def loaded(self) -> dict[str, LoadedModel]:
        return dict(self._models)

    def is_ready(self, name: str) -> bool:
        return name in self._models

    async def infer(self, name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        model = self.get(name)
        inflight = self._metrics.inflight.labels(name)
        inflight.inc()
        start = time.perf_counter()
        try:
            return await model.infer(inputs)
        finally:
            self._metrics.compute_time.labels(name, model.version).observe(time.perf_counter() - start)
            inflight.dec()

    async def close(self) -> None:
        for name, model in list(self._models.items()):
            self._metrics.model_ready.labels(name).set(0)
            await model.close()
        self._models.clear()
