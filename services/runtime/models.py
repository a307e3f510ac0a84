"""Loaded models by name: load + warm-up, readiness, and the one `infer` entry point.

Every model runs behind a scheduler (services/runtime/batching.py): dynamic batching where its
config.pbtxt asks for it, one request per execution otherwise; admission control either way.
Services reach models only through `ModelManager.infer`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from services.runtime.backends.base import Backend, LoadedModel
from services.runtime.batching import BatchingPolicy, DynamicBatcher
from services.runtime.errors import InferSuiteError, NonFiniteOutput, NotFound, Unavailable
from services.runtime.limits import ModelLimits, model_limits
from services.runtime.metrics import Metrics
from services.runtime.padding import BatchLayout
from services.runtime.repository import ModelRepository, RepositoryModel
from services.runtime.settings import RuntimeSettings
from services.runtime.stats import ModelStats

log = logging.getLogger(__name__)


def batching_policy(entry: RepositoryModel, model: LoadedModel, settings: RuntimeSettings) -> BatchingPolicy:
    """The scheduler's policy: config.pbtxt's dynamic_batching block, or for a model of the rows
    layout (which Triton cannot batch, so its config has max_batch_size 0) meta.json `batching.rows`."""
    rows = BatchLayout.from_meta(model.meta).rows
    if rows is not None:
        return BatchingPolicy(
            max_batch_size=rows.max_rows, max_queue_delay_s=rows.max_queue_delay_us / 1e6,
            max_queue_size=settings.max_queue_size, max_padding_fraction=settings.max_padding_fraction,
            instance_count=model.instance_count, combine=settings.dynamic_batching, max_cells=rows.max_cells)
    config = entry.config
    dynamic = config.dynamic_batching if config.HasField("dynamic_batching") else None
    combine = dynamic is not None and settings.dynamic_batching and config.max_batch_size > 1
    queue_size = dynamic.default_queue_policy.max_queue_size if dynamic is not None else 0
    delay_s = dynamic.max_queue_delay_microseconds / 1e6 if dynamic is not None and combine else 0.0
    preferred = tuple(dynamic.preferred_batch_size) if dynamic is not None and combine else ()
    return BatchingPolicy(
        max_batch_size=config.max_batch_size,
        max_queue_delay_s=delay_s,
        preferred_batch_sizes=preferred,
        max_queue_size=queue_size or settings.max_queue_size,
        max_padding_fraction=settings.max_padding_fraction,
        instance_count=model.instance_count,
        combine=combine,
    )


@dataclass(frozen=True)
class LoadFailure:
    """The latest version of a model that failed to load, and why (OIP RepositoryIndex shows it)."""

    version: str
    reason: str


class _ComputeCpuCollector(Collector):
    """`infersuite_model_compute_cpu_seconds_total{model}`: CPU time spent inside model execution,
    read at scrape time from the backend (the onnxruntime backend counts its executor thread's CPU
    around `session.run`: the whole execution with one intra-op thread). Server CPU minus this is
    the serving overhead (gRPC, protobuf, conversion, batching, metrics), reports/serving.md."""

    def __init__(self, manager: ModelManager):
        self._manager = manager

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("infersuite_model_compute_cpu_seconds",
                                     "CPU seconds spent inside model executions (backend threads).", labels=["model"])
        for name, model in self._manager.loaded().items():
            seconds = getattr(model, "compute_cpu_s", None)
            if seconds is not None:
                family.add_metric([name], seconds)
        yield family


class ModelManager:
    def __init__(self, repository: ModelRepository, backend: Backend, metrics: Metrics,
                 settings: RuntimeSettings | None = None):
        self.repository = repository
        self._backend = backend
        self._metrics = metrics
        self._settings = settings or RuntimeSettings()
        self._models: dict[str, LoadedModel] = {}
        self._schedulers: dict[str, DynamicBatcher] = {}
        self.stats: dict[str, ModelStats] = {}
        self._expected: set[str] = set()  # asked to load: loading, loaded or failed
        self._aliases: dict[str, str] = {}  # alias -> model (the repository's aliases.json)
        self.load_failures: dict[str, LoadFailure] = {}  # model -> its last failed load (cleared on success)
        self._inflight: dict[str, Any] = {}  # model -> its in-flight gauge child (no label lookup per request)
        self._limits: dict[str, ModelLimits] = {}  # model -> worst-case request bounds (services/runtime/limits.py)
        metrics.registry.register(_ComputeCpuCollector(self))

    async def load(self, names: Iterable[str]) -> None:
        """Loads and warms up every named model (latest version)."""
        for requested in names:
            name = self.repository.canonical(requested)
            if name != requested:
                self._aliases[requested] = name
            if name in self._models:
                continue
            self._expected.add(name)
            self._metrics.model_ready.labels(name).set(0)
            self._metrics.load_failures.labels(name)  # the series exists at 0 before any failure (alerts see the first)
            entry = self.repository.resolve(name)
            try:
                model, policy = await self.prepare(entry)
            except Unavailable:
                raise  # the backend is not up yet (the server retries): not a broken model
            except Exception as exc:
                self.record_failure(name, entry.version, exc)
                raise
            self.attach(model, policy)

    async def prepare(self, entry: RepositoryModel) -> tuple[LoadedModel, BatchingPolicy]:
        """Loads and warms up one version without serving it (services/runtime/reload.py swaps it in)."""
        model = await self._backend.load(entry)
        try:
            self._limits_for(model, entry.config.max_batch_size)  # a bad limits block fails the load
            await self._warm_up(model)
        except BaseException:
            await model.close()
            raise
        return model, batching_policy(entry, model, self._settings)

    def record_failure(self, name: str, version: str, exc: BaseException) -> LoadFailure:
        """Counts and keeps a failed load. The reason reaches any OIP caller (RepositoryIndex): our own
        errors keep their message; a library's text (paths, graph internals) goes to the log only."""
        detail = f": {exc.message[:300]}" if isinstance(exc, InferSuiteError) else " (the server log has the details)"
        failure = LoadFailure(version, f"version {version} failed to load: {type(exc).__name__}{detail}")
        self.load_failures[name] = failure
        self._metrics.load_failures.labels(name).inc()
        log.error("model %s version %s failed to load: %s: %s", name, version, type(exc).__name__, exc)
        return failure

    def swap(self, model: LoadedModel, policy: BatchingPolicy) -> tuple[LoadedModel, DynamicBatcher]:
        """Serves `model` in place of the loaded version of the same name; new requests reach it at
        once. Returns the old model and scheduler for the caller to drain and close."""
        old = self._models[model.name], self._schedulers[model.name]
        self._schedulers[model.name] = DynamicBatcher(model, policy, BatchLayout.from_meta(model.meta),
                                                      self._metrics, self.stats[model.name])
        self._models[model.name] = model
        self._limits[model.name] = self._limits_for(model, policy.max_batch_size)
        self.load_failures.pop(model.name, None)
        log.info("model %s now serves v%s (was v%s)", model.name, model.version, old[0].version)
        return old

    def attach(self, model: LoadedModel, policy: BatchingPolicy) -> None:
        """Serves an already loaded model behind a scheduler with `policy`."""
        self._expected.add(model.name)
        self.stats[model.name] = ModelStats()
        self._schedulers[model.name] = DynamicBatcher(model, policy, BatchLayout.from_meta(model.meta),
                                                      self._metrics, self.stats[model.name])
        self._models[model.name] = model
        self._limits[model.name] = self._limits_for(model, policy.max_batch_size)
        self._metrics.model_ready.labels(model.name).set(1)
        self._metrics.nonfinite_outputs.labels(model.name).inc(0)  # the series exists at 0 from the start
        log.info("model %s v%s ready (%s)", model.name, model.version, policy)

    def _limits_for(self, model: LoadedModel, max_batch_size: int) -> ModelLimits:
        return model_limits(model.name, model.inputs, model.meta, max_batch_size,
                            self._settings.max_request_elements)

    def limits(self, name: str) -> ModelLimits:
        """The bounds every request to `name` must keep (checked by `infer`; the OIP checks them before decoding)."""
        return self._limits[self.get(name).name]

    async def _warm_up(self, model: LoadedModel) -> None:
        # Dynamic dimensions of 2: the exporters never specialise a graph on sizes 0/1.
        inputs = {spec.name: spec.example(dynamic_size=2) for spec in model.inputs}
        for _ in range(self._settings.warmup_runs):
            await model.infer(inputs)

    def get(self, name: str) -> LoadedModel:
        name = self._aliases.get(name, name)
        model = self._models.get(name)
        if model is None:
            if name in self._expected or name in self.repository.names():
                raise Unavailable(f"model {name!r} is not loaded (loading, or its load failed: see the server log)")
            raise NotFound(f"model {name!r} is not served here (loaded: {', '.join(self._models) or 'none'})")
        return model

    def policy(self, name: str) -> BatchingPolicy:
        return self._schedulers[self.get(name).name].policy

    def loaded(self) -> dict[str, LoadedModel]:
        return dict(self._models)

    def is_ready(self, name: str) -> bool:
        return self._aliases.get(name, name) in self._models

    @property
    def all_ready(self) -> bool:
        return self._expected.issubset(self._models)

    async def infer(self, name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Queues the request on the model's scheduler and waits for its own outputs."""
        scheduler = self._schedulers.get(name)
        if scheduler is None:  # an alias, or not loaded (get raises the right error)
            name = self.get(name).name
            scheduler = self._schedulers[name]
        inflight = self._inflight.get(name)
        if inflight is None:
            inflight = self._inflight[name] = self._metrics.inflight.labels(name)
        self._limits[name].check(inputs)  # before the request takes a queue slot or any memory downstream
        stats = self.stats[name]
        inflight.inc()
        start, ok = time.perf_counter(), False
        try:
            result = await scheduler.submit(inputs)
            self._check_finite(name, result)
            ok = True
            return result
        finally:
            stats.record_request(ok, time.perf_counter() - start)
            inflight.dec()

    def _check_finite(self, name: str, outputs: Mapping[str, np.ndarray]) -> None:
        """A NaN/Inf anywhere in a float output fails the request (INTERNAL) and is counted. The sum
        is one pass without a temporary array; a NaN or Inf anywhere makes it non-finite, and only
        then (or on a finite overflow of the sum) are the values themselves checked."""
        for output, values in outputs.items():
            if values.dtype.kind in "fc" and not np.isfinite(values.sum()) and not np.isfinite(values).all():
                self._metrics.nonfinite_outputs.labels(name).inc()
                log.error("model %s output %r holds %d NaN/Inf value(s)", name, output,
                          int(values.size - np.count_nonzero(np.isfinite(values))))
                raise NonFiniteOutput(f"model {name!r} produced NaN/Inf in its output {output!r}; "
                                      "no answer was given")

    async def unload(self, name: str, drain_s: float) -> LoadedModel:
        """Stops serving `name` (explicit model control): new requests get UNAVAILABLE at once, queued
        ones get `drain_s` to finish, then the model is closed."""
        model = self.get(name)
        scheduler = self._schedulers.pop(model.name)
        del self._models[model.name]
        self._limits.pop(model.name, None)
        self._expected.discard(model.name)
        self._metrics.model_ready.labels(model.name).set(0)
        if not await scheduler.drain(drain_s):
            log.warning("model %s did not drain within %.1f s; its queued requests fail UNAVAILABLE",
                        model.name, drain_s)
        await scheduler.close()
        await model.close()
        log.info("model %s v%s unloaded", model.name, model.version)
        return model

    async def close(self) -> None:
        for name, model in list(self._models.items()):
            self._metrics.model_ready.labels(name).set(0)
            await self._schedulers.pop(name).close()
            await model.close()
        self._models.clear()
        close_backend = getattr(self._backend, "close", None)  # a remote backend's shared channel
        if close_backend is not None:
            await close_backend()
