"""Thin OIP servicer: protobuf <-> the runtime's ModelManager."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable
from typing import ClassVar

import grpc
import numpy as np
from grpc import aio
from tritonclient.grpc import service_pb2, service_pb2_grpc

from infersuite.services.runtime import bytes_inputs
from infersuite.services.runtime.control import ModelControl
from infersuite.services.runtime.errors import NotFound, Unimplemented
from infersuite.services.runtime.inflight_bytes import InflightBytes
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.model_manager import ModelManager, ServedModel
from infersuite.services.runtime.oip.converters import decode_inputs
from infersuite.services.runtime.oip.plan import InferPlan
from infersuite.services.runtime.stats import ModelStats
from infersuite.services.runtime.streaming import RequestStream

SERVER_NAME = "infersuite"
FINAL_FLAG_REQUEST = "triton_enable_empty_final_response"  # tritonclient's enable_empty_final_response=True
FINAL_FLAG = "triton_final_response"
SERVER_VERSION = "0.1.0"


def _duration(count: int, ns: int) -> service_pb2.StatisticDuration:
    return service_pb2.StatisticDuration(count=count, ns=ns)


def _statistics(name: str, version: str, stats: ModelStats) -> service_pb2.ModelStatistics:
    return service_pb2.ModelStatistics(
        name=name, version=version, last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count, execution_count=stats.execution_count,
        inference_stats=service_pb2.InferStatistics(
            success=_duration(stats.success_count, stats.success_ns),
            fail=_duration(stats.failure_count, stats.failure_ns),
            queue=_duration(stats.success_count, stats.queue_ns),
            compute_infer=_duration(stats.execution_count, stats.compute_ns),
        ))


def _stream_error(request: service_pb2.ModelInferRequest | None, code: grpc.StatusCode,
                  message: str) -> service_pb2.ModelStreamInferResponse:
    """A failed stream request, as Triton reports it: error_message set, the stream goes on."""
    response = service_pb2.ModelStreamInferResponse(error_message=message)
    if request is not None:  # None: the message could not be decoded, so there is no id to echo
        response.infer_response.id = request.id
        response.infer_response.model_name = request.model_name
        response.infer_response.model_version = request.model_version
    return response


class OipServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, models: ModelManager, max_message_bytes: int, metrics: Metrics,
                 stream_max_inflight: int = 64, serving: Callable[[], bool] = lambda: True,
                 control: ModelControl | None = None, budget: InflightBytes | None = None):
        self._models = models
        # ServerReady follows grpc.health's overall status: false while loading, while the workers of
        # one port wait for each other (infersuite/services/runtime/worker_pool.py), and from the start of a drain.
        self._serving = serving
        self._control = control
        self._max_bytes = max_message_bytes
        self._plans: weakref.WeakKeyDictionary[ServedModel, InferPlan] = weakref.WeakKeyDictionary()
        self._stream = RequestStream(metrics, "inference.GRPCInferenceService", "ModelStreamInfer",
                                     stream_max_inflight, budget)

    def _served(self, name: str, version: str) -> ServedModel:
        served = self._models.served(name)
        if version and version != served.model.version:
            raise NotFound(f"model {name!r} has no loaded version {version!r} (loaded: {served.model.version})")
        return served

    def _model(self, name: str, version: str):
        return self._served(name, version).model

    async def ServerLive(self, request, context: aio.ServicerContext):
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context: aio.ServicerContext):
        return service_pb2.ServerReadyResponse(ready=self._models.all_ready and self._serving())

    async def ModelReady(self, request, context: aio.ServicerContext):
        ready = self._models.is_ready(request.name) and (
            not request.version or request.version == self._models.get(request.name).version)
        return service_pb2.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request, context: aio.ServicerContext):
        return service_pb2.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION, extensions=[])

    async def ModelMetadata(self, request, context: aio.ServicerContext):
        model = self._model(request.name, request.version)
        config = self._models.served(model.name).config
        response = service_pb2.ModelMetadataResponse(name=model.name, versions=[model.version],
                                                     platform=config.platform or config.backend)
        strings = self._models.bytes_inputs.of(model)  # inputs the model's family also takes as BYTES
        for spec in model.inputs:
            response.inputs.add(name=spec.name, datatype=bytes_inputs.datatype(spec.name, spec.datatype, strings),
                                shape=list(spec.shape))
        for spec in model.outputs:
            response.outputs.add(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))
        return response

    async def ModelConfig(self, request, context: aio.ServicerContext):
        model = self._model(request.name, request.version)
        # config.pbtxt completed from the graph (infersuite/services/runtime/autocomplete.py), as Triton answers it;
        # the inputs the model also takes as strings show TYPE_STRING, as ModelMetadata shows BYTES.
        config = bytes_inputs.shown_config(self._models.served(model.name).config, self._models.bytes_inputs.of(model))
        return service_pb2.ModelConfigResponse(config=config)

    def _plan(self, served: ServedModel) -> InferPlan:
        plan = self._plans.get(served)
        if plan is None:  # once per served version (two threads may both build it: the same plan)
            model = served.model
            plan = self._plans[served] = InferPlan(model.inputs, model.outputs, served.limits, self._max_bytes)
        return plan

    def _decoded(self, request: service_pb2.ModelInferRequest) -> tuple[ServedModel, InferPlan,
                                                                         dict[str, np.ndarray], list[str]]:
        served = self._served(request.model_name, request.model_version)
        model, plan = served.model, self._plan(served)
        # Declared shapes are checked against the limits before decoding, values after (in `run`): in one
        # pass by the version's plan, or step by step, naming what is wrong (infersuite/services/runtime/oip/plan.py).
        inputs = plan.decoded_raw(request)
        if inputs is None:
            inputs = decode_inputs(request, model.inputs, self._max_bytes, served.limits,
                                   self._models.bytes_inputs.of(model))
        return served, plan, inputs, plan.requested(request)

    async def ModelInfer(self, request, context: aio.ServicerContext):
        served, plan, inputs, names = self._decoded(request)
        # Only the asked outputs are computed (all of them when the request names none).
        outputs = await self._models.run(served, inputs, names if request.outputs else None, shapes_checked=True)
        return plan.encode(request, served.model.version, outputs, names)

    def model_infer_sync(self, request: service_pb2.ModelInferRequest,
                         context: grpc.ServicerContext) -> service_pb2.ModelInferResponse:
        """ModelInfer on a thread of the synchronous transport (infersuite/services/runtime/sync_transport.py)."""
        served, plan, inputs, names = self._decoded(request)
        outputs = self._models.run_sync(served, inputs, names if request.outputs else None, True, context.is_active)
        return plan.encode(request, served.model.version, outputs, names)

    # Methods the synchronous transport runs on its own threads instead of handing them to the event loop.
    SYNC_METHODS: ClassVar[dict[str, str]] = {"ModelInfer": "model_infer_sync"}

    async def ModelStreamInfer(self, requests: AsyncIterator[service_pb2.ModelInferRequest],
                               context: aio.ServicerContext) -> AsyncIterator[service_pb2.ModelStreamInferResponse]:
        async def answer(request: service_pb2.ModelInferRequest) -> service_pb2.ModelStreamInferResponse:
            response = service_pb2.ModelStreamInferResponse(infer_response=await self.ModelInfer(request, context))
            if FINAL_FLAG_REQUEST in request.parameters and request.parameters[FINAL_FLAG_REQUEST].bool_param:
                # As Triton: the client asked to be told which response is a request's last (every one, here).
                response.infer_response.parameters[FINAL_FLAG].bool_param = True
            return response

        async for response in self._stream.responses(requests, answer, _stream_error):
            yield response

    async def ModelStatistics(self, request, context: aio.ServicerContext):
        names = [request.name] if request.name else sorted(self._models.loaded())
        models = [self._model(name, request.version) for name in names]
        totals = await self._models.statistics()  # every worker of this port's, not only this one's
        response = service_pb2.ModelStatisticsResponse()
        for name, model in zip(names, models, strict=True):
            response.model_stats.append(_statistics(name, model.version, totals.get(model.name, ModelStats())))
        return response

    async def RepositoryIndex(self, request, context: aio.ServicerContext):
        response = service_pb2.RepositoryIndexResponse()
        for name in self._models.repository.names():
            ready = self._models.is_ready(name)
            failure = self._models.load_failures.get(name)
            if ready:
                response.models.add(name=name, version=self._models.get(name).version, state="READY")
            elif not request.ready and failure is None:
                response.models.add(name=name, state="UNAVAILABLE", reason="not loaded by this server")
            if failure is not None and not request.ready:  # a failed version, e.g. beside a serving one
                response.models.add(name=name, version=failure.version, state="UNAVAILABLE", reason=failure.reason)
        return response

    async def RepositoryModelLoad(self, request, context: aio.ServicerContext):
        if self._control is None:
            raise Unimplemented("RepositoryModelLoad is not offered by this server")
        await self._control.load(request.model_name, list(request.parameters))
        return service_pb2.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context: aio.ServicerContext):
        if self._control is None:
            raise Unimplemented("RepositoryModelUnload is not offered by this server")
        await self._control.unload(request.model_name, list(request.parameters))
        return service_pb2.RepositoryModelUnloadResponse()


def _unimplemented(method: str, reason: str):  # type: ignore[no-untyped-def]
    async def refuse(self, request, context: aio.ServicerContext):  # type: ignore[no-untyped-def]
        raise Unimplemented(f"{method} is not supported: {reason}")

    refuse.__name__ = method
    return refuse


# The protocol's optional extensions infersuite does not offer: UNIMPLEMENTED with the reason, no traceback.
_SHARED_MEMORY = "inputs travel in the request (raw_input_contents); no shared-memory regions"
for _method, _reason in [
    ("SystemSharedMemoryStatus", _SHARED_MEMORY), ("SystemSharedMemoryRegister", _SHARED_MEMORY),
    ("SystemSharedMemoryUnregister", _SHARED_MEMORY), ("CudaSharedMemoryStatus", _SHARED_MEMORY),
    ("CudaSharedMemoryRegister", _SHARED_MEMORY), ("CudaSharedMemoryUnregister", _SHARED_MEMORY),
    ("LogSettings", "log settings come from INFERSUITE_LOG_LEVEL at start"),
    ("TraceSetting", "no request tracing; per-stage timings are Prometheus metrics"),
]:
    setattr(OipServicer, _method, _unimplemented(_method, _reason))
