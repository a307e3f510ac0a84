"""Loaded models by name: load + warm-up, readiness, and the one `infer` entry point.

Every model runs behind a scheduler (infersuite/services/runtime/batching.py): dynamic batching where its
config.pbtxt asks for it, one request per execution otherwise; admission control either way.
Services reach their models through a `ModelSet`: one consistent version of each model they
need (infersuite/services/runtime/lifecycle.py swaps it whole); the OIP endpoint through `ModelManager.infer`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from infersuite.services.runtime.autocomplete import ModelConfig, complete_config
from infersuite.services.runtime.backends.base import Backend, LoadedModel
from infersuite.services.runtime.batch_layout import BatchLayout
from infersuite.services.runtime.batching import BatchingPolicy, DynamicBatcher
from infersuite.services.runtime.bytes_inputs import BytesInputRegistry
from infersuite.services.runtime.context import request_deadline
from infersuite.services.runtime.errors import InferSuiteError, InvalidArgument, NonFiniteOutput, NotFound, Unavailable
from infersuite.services.runtime.limits import ModelLimits, model_limits
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.repository import ModelRepository, RepositoryModel
from infersuite.services.runtime.settings import RuntimeSettings
from infersuite.services.runtime.stats import ModelStats

log = logging.getLogger(__name__)


ROWS_BATCHING_PARAMETER = "infersuite_dynamic_batching"  # in ModelConfig's parameters, for the rows layout


def batching_policy(config: ModelConfig, model: LoadedModel, settings: RuntimeSettings) -> BatchingPolicy:
    """The scheduler's policy: the (completed) config's dynamic_batching block, or for a model of the
    rows layout (which Triton cannot batch, so its config has max_batch_size 0) meta.json `batching.rows`."""
    rows = BatchLayout.from_meta(model.meta).rows
    if rows is not None:
        return BatchingPolicy(
            max_batch_size=rows.max_rows, max_queue_delay_s=rows.max_queue_delay_us / 1e6,
            max_queue_size=settings.max_queue_size, max_padding_fraction=settings.max_padding_fraction,
            instance_count=model.instance_count, combine=settings.dynamic_batching, max_cells=rows.max_cells,
            inline_max_s=settings.inline_max_ms / 1e3, max_queue_time_s=settings.max_queue_time_ms / 1e3)
    dynamic = config.dynamic_batching if config.HasField("dynamic_batching") else None
    combine = dynamic is not None and settings.dynamic_batching and config.max_batch_size > 1
    queue_size = dynamic.default_queue_policy.max_queue_size if dynamic is not None else 0
    timeout_us = dynamic.default_queue_policy.default_timeout_microseconds if dynamic is not None else 0
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
        inline_max_s=settings.inline_max_ms / 1e3,
        max_queue_time_s=timeout_us / 1e6 if timeout_us else settings.max_queue_time_ms / 1e3,
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


@dataclass(frozen=True, eq=False)
class PreparedModel:
    """A loaded, warmed-up version not serving yet, with its completed config and batching policy."""

    model: LoadedModel
    config: ModelConfig  # config.pbtxt completed from the graph (what ModelConfig answers)
    policy: BatchingPolicy


@dataclass(frozen=True, eq=False)
class ServedModel:
    """One loaded version behind its own scheduler; retired (drained, closed) as one."""

    model: LoadedModel
    config: ModelConfig
    scheduler: DynamicBatcher
    stats: ModelStats  # the model's (kept across versions)
    inflight: Any  # the model's in-flight gauge child (no label lookup per request)
    limits: ModelLimits  # worst-case request bounds of this version (infersuite/services/runtime/limits.py)

    async def retire(self, drain_s: float) -> None:
        if not await self.scheduler.drain(drain_s):
            log.warning("model %s v%s did not drain within %.1f s; its queued requests fail UNAVAILABLE",
                        self.model.name, self.model.version, drain_s)
        await self.scheduler.close()
        await self.model.close()


class ModelSet:
    """One consistent version of each model a service needs: every request of the service runs on
    the versions of the set it started with, even if a reload serves newer ones meanwhile."""

    def __init__(self, manager: ModelManager, served: Mapping[str, ServedModel]):
        self._manager = manager
        self._served = dict(served)

    def _entry(self, name: str) -> ServedModel:
        served = self._served.get(self._manager.canonical(name))
        if served is None:
            raise NotFound(f"model {name!r} is not in this service's model set ({', '.join(self._served)})")
        return served

    def get(self, name: str) -> LoadedModel:
        return self._entry(name).model

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._manager.canonical(name) in self._served

    @property
    def names(self) -> list[str]:
        return list(self._served)

    def entries(self) -> dict[str, ServedModel]:
        return dict(self._served)

    def versions(self) -> dict[str, str]:
        return {name: served.model.version for name, served in self._served.items()}

    async def infer(self, name: str, inputs: Mapping[str, np.ndarray],
                    outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Runs on this set's version of `name`, whatever the manager serves now (`outputs` as ModelManager.infer)."""
        return await self._manager.run(self._entry(name), inputs, outputs)


class ModelManager:
    def __init__(self, repository: ModelRepository, backend: Backend, metrics: Metrics,
                 settings: RuntimeSettings | None = None):
        self.repository = repository
        self._backend = backend
        self._metrics = metrics
        self._settings = settings or RuntimeSettings()
        self._served: dict[str, ServedModel] = {}
        self.stats: dict[str, ModelStats] = {}
        self._expected: set[str] = set()  # asked to load: loading, loaded or failed
        self._aliases: dict[str, str] = {}  # alias -> model (the repository's aliases.json)
        self.load_failures: dict[str, LoadFailure] = {}  # model -> its last failed load (cleared on success)
        self._sync_stats = threading.Lock()  # statistics recorded from the synchronous transport's threads
        # The private metrics ports of the other workers of this port (infersuite/services/runtime/worker_pool.py tells
        # each worker): OIP statistics add theirs, so every connection reads the same figures.
        self.sibling_ports: list[int] = []
        # Inputs a family's models also take as OIP BYTES tensors (infersuite/services/runtime/bytes_inputs.py).
        self.bytes_inputs = BytesInputRegistry()
        metrics.routes["/statistics"] = self._statistics_json
        metrics.registry.register(_ComputeCpuCollector(self))

    def _statistics_json(self) -> bytes:
        return json.dumps({name: dataclasses.asdict(stats) for name, stats in list(self.stats.items())}).encode()

    async def statistics(self) -> dict[str, ModelStats]:
        """Every model's OIP statistics over all workers of this port: this process's plus its siblings'
        (read from their private metrics listeners; a sibling that does not answer, restarting, is left out
        and logged)."""
        totals = {name: ModelStats().plus(stats) for name, stats in list(self.stats.items())}
        if not self.sibling_ports:
            return totals
        replies = await asyncio.gather(*(asyncio.to_thread(_sibling_statistics, port) for port in self.sibling_ports))
        for reply in replies:
            for name, fields in (reply or {}).items():
                totals[name] = totals.get(name, ModelStats()).plus(ModelStats(**fields))
        return totals

    def expect(self, names: Iterable[str]) -> list[str]:
        """Marks models as asked for without loading them (a service's set, loaded by its transaction:
        infersuite/services/runtime/reload.py): their aliases are known, a call meanwhile hears "not loaded yet", and
        their ready and failure series exist at 0 (alerts see the first failure). Returns the canonical names."""
        canonical = []
        for requested in names:
            name = self.repository.canonical(requested)
            if name != requested:
                self._aliases[requested] = name
            canonical.append(name)
            if name in self._served:
                continue
            self._expected.add(name)
            self._metrics.model_ready.labels(name).set(0)
            self._metrics.load_failures.labels(name)
        return canonical

    async def load(self, names: Iterable[str]) -> None:
        """Loads and warms up every named model (latest version)."""
        for name in self.expect(names):
            if name in self._served:
                continue
            entry: RepositoryModel | None = None
            try:
                entry = self.repository.resolve(name)
                prepared = await self.prepare(entry)
            except Unavailable:
                raise  # the backend is not up yet (the server retries): not a broken model
            except Exception as exc:  # a file that does not parse is a failed load too (RepositoryIndex names it)
                versions = self.repository.versions(name)
                self.record_failure(name, entry.version if entry else (versions[-1] if versions else ""), exc)
                raise
            self.publish([self.schedule(prepared)])

    async def prepare(self, entry: RepositoryModel) -> PreparedModel:
        """Loads and warms up one version without serving it (infersuite/services/runtime/reload.py swaps it in);
        its config is completed from the graph (infersuite/services/runtime/autocomplete.py)."""
        model = await self._backend.load(entry)
        try:
            config = complete_config(entry.config, model.inputs, model.outputs, self._settings.default_max_batch_size)
            self._limits_for(model, config.max_batch_size)  # a bad limits block fails the load
            await self._warm_up(model)
        except BaseException:
            await model.close()
            raise
        policy = batching_policy(config, model, self._settings)
        rows = BatchLayout.from_meta(model.meta).rows
        if rows is not None and policy.combine:  # ModelConfig shows the batching Triton's fields cannot say
            config.parameters[ROWS_BATCHING_PARAMETER].string_value = (
                f"rows layout (meta.json batching.rows): requests are combined along their rows "
                f"({', '.join(sorted(rows.inputs))}), up to {rows.max_rows} rows and {rows.max_cells} cells per "
                f"execution, max queue delay {rows.max_queue_delay_us} us; max_batch_size stays 0 because "
                "Triton cannot batch this layout")
        return PreparedModel(model, config, policy)

    def record_failure(self, name: str, version: str, exc: BaseException) -> LoadFailure:
        """Counts and keeps a failed load. The reason reaches any OIP caller (RepositoryIndex): our own
        errors keep their message; a library's text (paths, graph internals) goes to the log only."""
        own = isinstance(exc, InferSuiteError) or type(exc).__module__.startswith("infersuite.services.")
        detail = f": {str(exc)[:300]}" if own else " (the server log has the details)"
        which = f"version {version}" if version else "the model (no version in the repository)"
        failure = LoadFailure(version, f"{which} failed to load: {type(exc).__name__}{detail}")
        self.load_failures[name] = failure
        self._metrics.load_failures.labels(name).inc()
        log.error("model %s%s failed to load: %s: %s", name, f" version {version}" if version else "",
                  type(exc).__name__, exc)
        return failure

    def schedule(self, prepared: PreparedModel) -> ServedModel:
        """A scheduler for a prepared model, not serving yet (`publish` serves it)."""
        model, policy = prepared.model, prepared.policy
        stats = self.stats.setdefault(model.name, ModelStats())
        scheduler = DynamicBatcher(model, policy, BatchLayout.from_meta(model.meta), self._metrics, stats)
        return ServedModel(model, prepared.config, scheduler, stats, self._metrics.inflight.labels(model.name),
                           self._limits_for(model, policy.max_batch_size))

    def attach(self, model: LoadedModel, policy: BatchingPolicy) -> None:
        """Serves an already loaded model behind a scheduler with `policy` (its config derived from its tensors)."""
        config = complete_config(ModelConfig(name=model.name), model.inputs, model.outputs, 0)
        self.publish([self.schedule(PreparedModel(model, config, policy))])

    def _limits_for(self, model: LoadedModel, max_batch_size: int) -> ModelLimits:
        return model_limits(model.name, model.inputs, model.meta, max_batch_size,
                            self._settings.max_request_elements)

    def limits(self, name: str) -> ModelLimits:
        """The bounds every request to `name` must keep (checked by `run`; the OIP checks them before decoding)."""
        return self.served(name).limits

    def publish(self, served: Iterable[ServedModel]) -> list[ServedModel]:
        """Serves every given version at once (no await: no request sees half of them); returns the
        versions they replace, for the caller to retire once their requests are done."""
        replaced = []
        for entry in served:
            name = entry.model.name
            old = self._served.get(name)
            if old is entry:
                continue
            self._expected.add(name)
            self._served[name] = entry
            self.load_failures.pop(name, None)
            self._metrics.model_ready.labels(name).set(1)
            if old is not None:
                replaced.append(old)
                log.info("model %s now serves v%s (was v%s)", name, entry.model.version, old.model.version)
            else:
                self._metrics.nonfinite_outputs.labels(name).inc(0)  # the series exists at 0 from the start
                log.info("model %s v%s ready (%s)", name, entry.model.version, entry.scheduler.policy)
        return replaced

    def model_set(self, names: Iterable[str]) -> ModelSet:
        """The versions served now of `names` (each must be loaded), as one consistent set."""
        return ModelSet(self, {(canonical := self.canonical(n)): self.served(canonical) for n in names})

    async def _warm_up(self, model: LoadedModel) -> None:
        # Dynamic dimensions of 2: the exporters never specialise a graph on sizes 0/1.
        inputs = {spec.name: spec.example(dynamic_size=2) for spec in model.inputs}
        for _ in range(self._settings.warmup_runs):
            await model.infer(inputs)

    def canonical(self, name: str) -> str:
        return self._aliases.get(name, name)

    def served(self, name: str) -> ServedModel:
        """The version served now (raises NotFound or Unavailable)."""
        name = self.canonical(name)
        served = self._served.get(name)
        if served is None:
            if name in self._expected:
                raise Unavailable(f"model {name!r} is not loaded yet (loading, or its load failed: see the server log)")
            if name in self.repository.names():
                raise Unavailable(f"model {name!r} is in the repository but not loaded (explicit model control: "
                                  "load it with RepositoryModelLoad or INFERSUITE_LOAD_MODELS)")
            raise NotFound(f"model {name!r} is not served here (loaded: {', '.join(self._served) or 'none'})")
        return served

    def get(self, name: str) -> LoadedModel:
        return self.served(name).model

    def policy(self, name: str) -> BatchingPolicy:
        return self.served(name).scheduler.policy

    def loaded(self) -> dict[str, LoadedModel]:
        return {name: served.model for name, served in self._served.items()}

    def is_ready(self, name: str) -> bool:
        return self.canonical(name) in self._served

    @property
    def all_ready(self) -> bool:
        return self._expected.issubset(self._served)

    async def infer(self, name: str, inputs: Mapping[str, np.ndarray],
                    outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Queues the request on the served version's scheduler and waits for its own outputs
        (`outputs`: the ones the caller reads, None = every output; the result may hold more)."""
        served = self._served.get(name)
        if served is None:  # an alias, or not loaded (`served` raises the right error)
            served = self.served(name)
        return await self.run(served, inputs, outputs)

    async def run(self, served: ServedModel, inputs: Mapping[str, np.ndarray],
                  outputs: Sequence[str] | None = None, shapes_checked: bool = False) -> dict[str, np.ndarray]:
        """Runs on exactly that version (a ModelSet's, or the one served now). `shapes_checked`: the
        caller checked the inputs' shapes against `served.limits` before decoding them (OIP)."""
        # Before the request takes a queue slot or any memory downstream.
        served.limits.check(inputs, shapes_checked)
        inflight = served.inflight
        inflight.inc()
        start, ok = time.perf_counter(), False
        try:
            result = await served.scheduler.submit(inputs, outputs)
            self._check_finite(served.model.name, result, inputs)
            ok = True
            return result
        finally:
            served.stats.record_request(ok, time.perf_counter() - start)
            inflight.dec()

    def run_sync(self, served: ServedModel, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None,
                 shapes_checked: bool, wanted: Callable[[], bool]) -> dict[str, np.ndarray]:
        """`run` on the calling thread, for the synchronous transport (infersuite/services/runtime/sync_transport.py):
        the model runs on this thread when its backend runs in-process (DynamicBatcher.run_sync), else the
        request is handed to the event loop's `run`. `wanted()` turns false when the client has left."""
        scheduler = served.scheduler
        if not scheduler.runs_sync:
            return asyncio.run_coroutine_threadsafe(
                self.run(served, inputs, outputs, shapes_checked), scheduler.loop).result()
        served.limits.check(inputs, shapes_checked)
        inflight = served.inflight
        inflight.inc()
        start, ok = time.perf_counter(), False
        try:
            result = scheduler.run_sync(inputs, outputs, request_deadline.get(), wanted)
            self._check_finite(served.model.name, result, inputs)
            ok = True
            return result
        finally:
            with self._sync_stats:
                served.stats.record_request(ok, time.perf_counter() - start)
            inflight.dec()

    def _check_finite(self, name: str, outputs: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray]) -> None:
        """A NaN/Inf anywhere in a float output fails the request and is counted: INVALID_ARGUMENT when the
        request itself sent NaN/Inf in a float input (the client's fault, named), else INTERNAL (the model's).
        The sum is one pass without a temporary array; a NaN or Inf anywhere makes it non-finite, and only
        then (or on a finite overflow of the sum) are the values themselves checked."""
        for output, values in outputs.items():
            if values.dtype.kind in "fc" and not np.isfinite(values.sum()) and not np.isfinite(values).all():
                for input_name, sent in inputs.items():
                    if sent.dtype.kind in "fc" and not (finite := np.isfinite(sent)).all():
                        first = np.unravel_index(int(np.argmin(finite)), sent.shape)
                        raise InvalidArgument(
                            f"input {input_name!r} holds {sent.size - np.count_nonzero(finite)} NaN or Inf value(s), "
                            f"the first at index {list(map(int, first))} ({sent[first]}); model {name!r} answers "
                            "only finite outputs")
                self._metrics.nonfinite_outputs.labels(name).inc()
                log.error("model %s output %r holds %d NaN/Inf value(s)", name, output,
                          int(values.size - np.count_nonzero(np.isfinite(values))))
                raise NonFiniteOutput(f"model {name!r} produced NaN/Inf in its output {output!r}; "
                                      "no answer was given")

    async def unload(self, name: str, drain_s: float) -> LoadedModel:
        """Stops serving `name` (explicit model control): new requests get UNAVAILABLE at once (a
        service's model set that holds it too), queued ones get `drain_s` to finish, then it closes."""
        served = self.served(name)
        model = served.model
        del self._served[model.name]
        self._expected.discard(model.name)
        self._metrics.model_ready.labels(model.name).set(0)
        await served.retire(drain_s)
        log.info("model %s v%s unloaded", model.name, model.version)
        return model

    async def close(self) -> None:
        for name, served in list(self._served.items()):
            self._metrics.model_ready.labels(name).set(0)
            await served.scheduler.close()
            await served.model.close()
        self._served.clear()
        close_backend = getattr(self._backend, "close", None)  # a remote backend's shared channel
        if close_backend is not None:
            await close_backend()


SIBLING_TIMEOUT_S = 1.0


def _sibling_statistics(port: int) -> dict[str, dict[str, int]] | None:
    """A sibling worker's statistics from its private localhost listener; None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/statistics", timeout=SIBLING_TIMEOUT_S) as reply:
            return json.loads(reply.read())  # type: ignore[no-any-return]
    except (OSError, ValueError) as exc:
        log.warning("statistics of the worker on port %d unreadable (left out): %s", port, exc)
        return None
