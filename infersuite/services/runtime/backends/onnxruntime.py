"""In-process onnxruntime backend. Sessions run on a per-model thread pool (onnxruntime
releases the GIL), so the event loop keeps serving while a model computes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import onnxruntime as ort

from infersuite.services.runtime.errors import InvalidArgument, RepositoryError, Unavailable
from infersuite.services.runtime.repository import RepositoryModel
from infersuite.services.runtime.settings import RuntimeSettings
from infersuite.services.runtime.tensors import ONNX_TYPE_TO_DATATYPE, TensorSpec

log = logging.getLogger(__name__)

PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(requested: list[str]) -> list[str]:
    """The requested providers that exist here, else the best available ones, CPU last."""
    available = ort.get_available_providers()
    wanted = requested or list(PROVIDER_PREFERENCE)
    chosen = [p for p in wanted if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _specs(model: str, args: list[Any]) -> list[TensorSpec]:
    unsupported = [f"{a.name!r} ({a.type})" for a in args if a.type not in ONNX_TYPE_TO_DATATYPE]
    if unsupported:
        raise RepositoryError(f"model {model!r} has tensors of types this server cannot exchange: "
                              f"{', '.join(unsupported)} (it serves {', '.join(ONNX_TYPE_TO_DATATYPE)})")
    return [
        TensorSpec(a.name, ONNX_TYPE_TO_DATATYPE[a.type],
                   tuple(d if isinstance(d, int) and d >= 0 else -1 for d in a.shape))
        for a in args
    ]


def _instance_count(model: RepositoryModel, default: int) -> int:
    groups = model.config.instance_group
    return sum(g.count for g in groups if g.count > 0) or default


class OnnxRuntimeModel:
    def __init__(self, model: RepositoryModel, session: ort.InferenceSession, instance_count: int):
        self.name, self.version, self.meta = model.name, model.version, model.meta
        self.instance_count = instance_count
        self._session = session
        self.inputs = _specs(model.name, session.get_inputs())
        self.outputs = _specs(model.name, session.get_outputs())
        self._output_names = [o.name for o in self.outputs]
        self._executor = ThreadPoolExecutor(instance_count, thread_name_prefix=f"ort-{model.name}")
        self._closed = False
        self.compute_cpu_s = 0.0  # CPU seconds spent inside session.run (read by the metrics collector)

    def _run(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        # Only the asked outputs: onnxruntime then skips the nodes that feed none of them
        # (DIN's activation_weights when only click_probability is asked).
        names = list(outputs) if outputs else self._output_names
        cpu = time.thread_time()
        try:
            results = self._session.run(names, dict(inputs))
        except (ort.capi.onnxruntime_pybind11_state.InvalidArgument,
                ort.capi.onnxruntime_pybind11_state.InvalidGraph) as exc:
            # The runtime's limits check first; onnxruntime's own text names graph nodes: the log only.
            log.warning("model %s rejected inputs: %s", self.name, exc)
            shapes = ", ".join(f"{name} {list(value.shape)}" for name, value in inputs.items())
            raise InvalidArgument(f"model {self.name!r} cannot run on these inputs ({shapes})") from None
        finally:
            # The executor thread's CPU time: the whole execution when intra_op_threads is 1.
            self.compute_cpu_s += time.thread_time() - cpu
        return dict(zip(names, results, strict=True))

    async def infer(self, inputs: Mapping[str, np.ndarray],
                    outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        if self._executor is None:
            raise Unavailable(f"model {self.name!r} is unloaded")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, inputs, outputs)

    def infer_now(self, inputs: Mapping[str, np.ndarray],
                  outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """`infer` on the calling thread (the scheduler's inline path for short executions of an idle model)."""
        if self._closed:
            raise Unavailable(f"model {self.name!r} is unloaded")
        return self._run(inputs, outputs)

    async def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=True)


class OnnxRuntimeBackend:
    def __init__(self, settings: RuntimeSettings):
        self._settings = settings
        self.providers = choose_providers(settings.execution_providers)

    def _session(self, model: RepositoryModel) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._settings.intra_op_threads
        options.inter_op_num_threads = 1
        # A spinning pool thread would take the core from the event loop between executions.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Flush denormals in onnxruntime's threads (and, once per process, the creating worker thread):
        # arithmetic on them takes x86's slow path; they are far below any meaningful value.
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
        return ort.InferenceSession(str(model.model_path), options, providers=self.providers)

    async def load(self, model: RepositoryModel) -> OnnxRuntimeModel:
        if not model.model_path.is_file():
            raise RepositoryError(f"model {model.name!r} version {model.version} has no {model.model_path.name}")
        session = await asyncio.to_thread(self._session, model)
        log.info("loaded %s v%s on %s", model.name, model.version, session.get_providers())
        return OnnxRuntimeModel(model, session, _instance_count(model, self._settings.instance_count))
