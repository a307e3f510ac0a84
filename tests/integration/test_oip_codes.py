"""Open Inference Protocol status codes (issue 14): optional extensions answer UNIMPLEMENTED without a
traceback, explicit model control loads and unloads models (health follows), metadata reports the
platform of the model's config."""

from __future__ import annotations

import logging
import shutil

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from infersuite.services.ctr import CtrService, CtrSettings
from infersuite.services.ctr.client import CtrClient, CtrClientError
from infersuite.services.runtime import RuntimeSettings, build_server
from tests.reliability.load import metric, scrape

pytestmark = pytest.mark.integration
MODEL = "din-fp32"
CTR_HEALTH = "infersuite.ctr.v1.CtrService"
UNOFFERED = {
    "SystemSharedMemoryStatus": service_pb2.SystemSharedMemoryStatusRequest(),
    "SystemSharedMemoryRegister": service_pb2.SystemSharedMemoryRegisterRequest(name="r", key="/k", byte_size=8),
    "SystemSharedMemoryUnregister": service_pb2.SystemSharedMemoryUnregisterRequest(name="r"),
    "CudaSharedMemoryStatus": service_pb2.CudaSharedMemoryStatusRequest(),
    "CudaSharedMemoryRegister": service_pb2.CudaSharedMemoryRegisterRequest(name="r", byte_size=8),
    "CudaSharedMemoryUnregister": service_pb2.CudaSharedMemoryUnregisterRequest(name="r"),
    "LogSettings": service_pb2.LogSettingsRequest(),
    "TraceSetting": service_pb2.TraceSettingRequest(),
}


async def _serve(repository, **settings):
    settings = {"port": 0, "metrics_port": -1, "host": "127.0.0.1", "model_repository": repository, **settings}
    server, port = await build_server(
        RuntimeSettings(**settings),
        [CtrService(CtrSettings(model=MODEL))])
    await server.start()
    await server.wait_ready(timeout=60)
    return server, port


@pytest.fixture(scope="module")
async def explicit(tiny_ctr, tmp_path_factory):
    """A copy of the tiny repository whose config names no platform (only the backend)."""
    repository = tmp_path_factory.mktemp("explicit") / "repo"
    shutil.copytree(tiny_ctr.repository, repository)
    config = repository / MODEL / "config.pbtxt"
    config.write_text(config.read_text().replace('platform: "onnxruntime_onnx"\n', ""))
    server, port = await _serve(repository, model_control_mode="explicit")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield server, port, channel
    await channel.close()
    await server.stop(0)


@pytest.mark.parametrize("method", sorted(UNOFFERED))
async def test_unoffered_extensions_answer_unimplemented_without_a_traceback(explicit, method, caplog) -> None:
    _, _, channel = explicit
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as err:
        await getattr(stub, method)(UNOFFERED[method], timeout=10)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, err.value.details()
    assert err.value.details().startswith(f"{method} is not supported: ") and "\n" not in err.value.details()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_metadata_platform_comes_from_the_config(explicit) -> None:
    _, _, channel = explicit
    reply = await service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(
        service_pb2.ModelMetadataRequest(name=MODEL), timeout=10)
    assert reply.platform == "onnxruntime"  # this config names only its backend


async def _scores(port: int, tiny_ctr) -> np.ndarray:
    async with CtrClient(f"127.0.0.1:{port}") as ctr:
        result = await ctr.score(np.array([1, 2, 3]), np.array([1, 1, 2]), np.array([4, 5]), np.array([1, 2]))
    return np.asarray(result.click_probabilities)


async def _health(channel: grpc.aio.Channel, service: str) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return reply.status


async def test_explicit_unload_and_load_change_what_is_served_and_health_follows(explicit, tiny_ctr) -> None:
    _, port, channel = explicit
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    before = await _scores(port, tiny_ctr)
    await stub.RepositoryModelUnload(service_pb2.RepositoryModelUnloadRequest(model_name=MODEL), timeout=30)
    assert not (await stub.ModelReady(service_pb2.ModelReadyRequest(name=MODEL))).ready
    assert await _health(channel, CTR_HEALTH) == health_pb2.HealthCheckResponse.NOT_SERVING
    assert await _health(channel, "") == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(CtrClientError) as unloaded:
        await _scores(port, tiny_ctr)
    assert unloaded.value.code == grpc.StatusCode.UNAVAILABLE
    await stub.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name=MODEL), timeout=60)
    assert (await stub.ModelReady(service_pb2.ModelReadyRequest(name=MODEL))).ready
    assert await _health(channel, CTR_HEALTH) == health_pb2.HealthCheckResponse.SERVING
    np.testing.assert_array_equal(await _scores(port, tiny_ctr), before)
    # Loading a served model reloads it (unchanged here); unknown models are NOT_FOUND.
    await stub.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name=MODEL), timeout=60)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name="nope"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in err.value.details()


async def test_model_control_is_refused_unless_explicit(tiny_ctr) -> None:
    server, port = await _serve(tiny_ctr.repository)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            for call, request in [(stub.RepositoryModelUnload, service_pb2.RepositoryModelUnloadRequest),
                                  (stub.RepositoryModelLoad, service_pb2.RepositoryModelLoadRequest)]:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call(request(model_name=MODEL), timeout=10)
                assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "INFERSUITE_MODEL_CONTROL_MODE=explicit" in err.value.details()
            assert (await stub.ModelReady(service_pb2.ModelReadyRequest(name=MODEL))).ready
    finally:
        await server.stop(0)


async def test_an_answer_over_the_message_limit_is_refused_and_counted_as_the_client_sees_it(tiny_ctr) -> None:
    """gRPC refuses to send such an answer (RESOURCE_EXHAUSTED) after the handler returned: counted OK
    before (issue 14's "metrics that hide events"); now the handler refuses it, with no retry hint."""
    server, port = await _serve(tiny_ctr.repository, max_message_bytes=8192, metrics_port=0, metrics_host="127.0.0.1")
    history, rows = 60, 80
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    for name, value in {"history_items": np.ones((1, history), np.int64),
                        "history_categories": np.ones((1, history), np.int64),
                        "history_mask": np.ones((1, history), np.float32),
                        "candidate_items": np.ones(rows, np.int64), "candidate_categories": np.ones(rows, np.int64),
                        "candidate_user": np.zeros(rows, np.int64)}.items():
        request.inputs.add(name=name, datatype="FP32" if value.dtype == np.float32 else "INT64", shape=value.shape)
        request.raw_input_contents.append(value.tobytes())
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ModelInfer(request, timeout=10)  # activation_weights: 80 x 60 floats
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "over the server's message limit of 8192" in err.value.details()
            assert ("grpc-retry-pushback-ms", "-1") in tuple(err.value.trailing_metadata())
            request.outputs.add(name="click_probability")
            assert (await stub.ModelInfer(request, timeout=10)).outputs[0].shape == [rows]
        samples = scrape(f"http://127.0.0.1:{server.metrics_port}/metrics")
        assert metric(samples, "infersuite_requests_total", method="ModelInfer", code="RESOURCE_EXHAUSTED") == 1
        assert metric(samples, "infersuite_requests_total", method="ModelInfer", code="OK") == 1
    finally:
        await server.stop(0)
