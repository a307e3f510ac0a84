"""The synchronous transport (INFERSUITE_TRANSPORT=sync, infersuite/services/runtime/sync_transport.py): the same
answers as grpc.aio, the client's faults answered as theirs, streams, auth, and the model's admission
on the calling thread (queue full, a deadline it cannot meet, a client that left)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from infersuite.services.ctr import CtrService, CtrSettings
from infersuite.services.runtime import Runtime
from infersuite.services.runtime.batching import BatchingPolicy
from infersuite.services.runtime.tensors import TensorSpec
from tests.fixtures import serving
from tests.reliability.load import metric, scrape

pytestmark = pytest.mark.integration
MODEL = "din-fp32"
INFER = "/inference.GRPCInferenceService/ModelInfer"


def _request(n_items: int, n_categories: int, seed: int) -> service_pb2.ModelInferRequest:
    rng = np.random.default_rng(seed)
    history, candidates = int(rng.integers(1, 12)), int(rng.integers(1, 9))
    feeds = {
        "history_items": rng.integers(1, n_items + 1, (1, history)), "history_categories":
        rng.integers(1, n_categories + 1, (1, history)), "history_mask": np.ones((1, history), np.float32),
        "candidate_items": rng.integers(1, n_items + 1, candidates), "candidate_categories":
        rng.integers(1, n_categories + 1, candidates), "candidate_user": np.zeros(candidates, np.int64)}
    request = service_pb2.ModelInferRequest(model_name=MODEL, id=f"r{seed}")
    for name, value in feeds.items():
        value = value.astype(np.float32 if name == "history_mask" else np.int64)
        request.inputs.add(name=name, datatype="FP32" if value.dtype == np.float32 else "INT64", shape=value.shape)
        request.raw_input_contents.append(value.tobytes())
    return request


def _feeds(request: service_pb2.ModelInferRequest) -> dict[str, np.ndarray]:
    return {t.name: np.frombuffer(raw, np.float32 if t.datatype == "FP32" else np.int64).reshape(tuple(t.shape))
            for t, raw in zip(request.inputs, request.raw_input_contents, strict=True)}


async def _answers(port: int, requests: list[service_pb2.ModelInferRequest]) -> list[service_pb2.ModelInferResponse]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        return list(await asyncio.gather(*(stub.ModelInfer(r, timeout=30) for r in requests)))


async def test_sync_answers_equal_aio_and_bare_onnxruntime(tiny_ctr) -> None:
    requests = [_request(tiny_ctr.n_items, tiny_ctr.n_categories, seed) for seed in range(24)]
    answers = {}
    for transport in ("aio", "sync"):
        async with serving([CtrService(CtrSettings())], tiny_ctr.repository, transport=transport) as served:
            answers[transport] = await _answers(served.port, requests)
    session = ort.InferenceSession(str(tiny_ctr.repository / MODEL / "1" / "model.onnx"))
    for request, sync, aio in zip(requests, answers["sync"], answers["aio"], strict=True):
        assert sync.id == request.id and sync.model_name == MODEL
        assert [o.name for o in sync.outputs] == [o.name for o in aio.outputs]
        expected = session.run(None, _feeds(request))
        for index, want in enumerate(expected):  # aio may have combined it with others: padding moves ulps
            for answer in (sync, aio):
                got = np.frombuffer(answer.raw_output_contents[index], np.float32)
                got = got.reshape(tuple(answer.outputs[index].shape))
                assert np.isfinite(got).all() and np.allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
async def sync_ctr(tiny_ctr):
    async with serving([CtrService(CtrSettings())], tiny_ctr.repository, transport="sync",
                       transport_threads=4) as served:
        yield served


async def test_client_faults_are_the_clients_and_counted(sync_ctr, tiny_ctr) -> None:
    good = _request(tiny_ctr.n_items, tiny_ctr.n_categories, 0)
    wrong_type = service_pb2.ModelInferRequest()
    wrong_type.CopyFrom(good)
    wrong_type.inputs[0].datatype = "FP32"
    before = scrape(sync_ctr.metrics_url)
    async with grpc.aio.insecure_channel(sync_ctr.address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        cases = [(stub.ModelInfer(wrong_type, timeout=10), grpc.StatusCode.INVALID_ARGUMENT, "datatype FP32"),
                 (channel.unary_unary(INFER)(b"\xff\xff\xff", timeout=10), grpc.StatusCode.INVALID_ARGUMENT,
                  "not a valid ModelInferRequest"),
                 (stub.ModelInfer(service_pb2.ModelInferRequest(model_name="nope"), timeout=10),
                  grpc.StatusCode.NOT_FOUND, "'nope'"),
                 (channel.unary_unary("/no.Such/Method")(b"", timeout=10), grpc.StatusCode.UNIMPLEMENTED,
                  "unknown service or method")]
        for call, code, words in cases:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == code and words in err.value.details(), err.value.details()
        ok = await stub.ModelInfer(good, timeout=10)
        assert ok.id == good.id
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    after = scrape(sync_ctr.metrics_url)

    def grew(code: str) -> float:
        labels = {"method": "ModelInfer", "code": code}
        return metric(after, "infersuite_requests_total", **labels) - metric(
            before, "infersuite_requests_total", **labels)

    assert grew("INVALID_ARGUMENT") == 2 and grew("NOT_FOUND") == 1 and grew("OK") == 1
    assert grew("INTERNAL") == 0


async def test_a_stream_answers_each_request_and_reads_on_after_a_bad_message(sync_ctr, tiny_ctr) -> None:
    requests = [_request(tiny_ctr.n_items, tiny_ctr.n_categories, seed).SerializeToString() for seed in range(6)]
    requests.insert(3, b"\xff\xff\xff")  # not a ModelInferRequest: answered with an error, the stream goes on
    async with grpc.aio.insecure_channel(sync_ctr.address) as channel:
        call = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer",
                                     response_deserializer=service_pb2.ModelStreamInferResponse.FromString)
        answers = [answer async for answer in call(iter(requests), timeout=30)]
    assert sorted(a.infer_response.id for a in answers if not a.error_message) == [f"r{i}" for i in range(6)]
    errors = [a.error_message for a in answers if a.error_message]
    assert len(errors) == 1 and "not a valid ModelInferRequest" in errors[0]


async def test_bearer_token_guards_the_synchronous_path(tiny_ctr) -> None:
    good = _request(tiny_ctr.n_items, tiny_ctr.n_categories, 1)
    async with serving([CtrService(CtrSettings())], tiny_ctr.repository, transport="sync",
                       auth_token="s3cret") as served, grpc.aio.insecure_channel(served.address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ModelInfer(good, timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = await stub.ModelInfer(good, timeout=10, metadata=(("authorization", "Bearer s3cret"),))
        assert answer.id == good.id
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # health needs no token


async def test_health_watch_follows_the_server(sync_ctr) -> None:
    """health Watch (an asyncio servicer that answers through context.write) streams each change."""
    async with grpc.aio.insecure_channel(sync_ctr.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=30)
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        await sync_ctr.server.hold()  # every entry NOT_SERVING, as below INFERSUITE_MIN_WORKERS
        try:
            second = await asyncio.wait_for(watch.read(), 10)
            assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
        finally:
            await sync_ctr.server.set_serving(["", *CtrService.grpc_service_names])
        third = await asyncio.wait_for(watch.read(), 10)
        assert third.status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()


class SlowModel:
    """y = x + 1 in `compute_s` of wall time, on the calling thread (`infer_now`, as onnxruntime runs)."""

    def __init__(self, compute_s: float):
        self.name, self.version, self.instance_count, self.meta = "slow", "1", 1, {}
        self.inputs = [TensorSpec("x", "FP32", (-1, 4))]
        self.outputs = [TensorSpec("y", "FP32", (-1, 4))]
        self.compute_s, self.computed = compute_s, []
        self._lock = threading.Lock()

    def infer_now(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, Any]:
        time.sleep(self.compute_s)
        with self._lock:
            self.computed.append(float(inputs["x"][0, 0]))
        return {"y": inputs["x"] + 1}

    async def infer(self, inputs: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self.infer_now, inputs, outputs)

    async def close(self) -> None:
        return None


class SlowService:
    name = "slow"
    grpc_service_names: tuple[str, ...] = ()

    def __init__(self, model: SlowModel, max_queue_size: int):
        self.model, self.max_queue_size = model, max_queue_size

    def required_models(self, repository: object) -> list[str]:
        return []

    def register(self, server: Any, runtime: Runtime) -> None:
        runtime.models.attach(self.model, BatchingPolicy(max_batch_size=0, max_queue_delay_s=0.0, combine=False,
                                                         max_queue_size=self.max_queue_size))


def _slow_request(value: float) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="slow")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(np.full((1, 4), value, np.float32).tobytes())
    return request


async def test_admission_on_the_calling_thread(tmp_path) -> None:
    """One instance busy for 1 s: a second request waits for it, a third finds the queue (of 1) full, one
    whose deadline cannot be met is refused at once, and one whose client leaves while waiting is never
    computed."""
    model = SlowModel(compute_s=1.0)
    (tmp_path / "repo").mkdir()
    async with serving([SlowService(model, max_queue_size=1)], tmp_path / "repo", transport="sync",
                       transport_threads=8, warmup_runs=0) as served, \
            grpc.aio.insecure_channel(served.address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        await stub.ModelInfer(_slow_request(0), timeout=30)  # the model's cost is known from here on
        running = asyncio.ensure_future(stub.ModelInfer(_slow_request(1), timeout=30))
        await asyncio.sleep(0.3)
        waiting = asyncio.ensure_future(stub.ModelInfer(_slow_request(2), timeout=30))
        await asyncio.sleep(0.3)
        with pytest.raises(grpc.aio.AioRpcError) as full:
            await stub.ModelInfer(_slow_request(3), timeout=30)
        assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue is full" in full.value.details()
        assert (await running).outputs[0].name == "y"
        assert np.frombuffer((await waiting).raw_output_contents[0], np.float32).tolist() == [3.0] * 4
        running = asyncio.ensure_future(stub.ModelInfer(_slow_request(4), timeout=30))
        await asyncio.sleep(0.3)
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await stub.ModelInfer(_slow_request(5), timeout=0.4)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "deadline cannot be met" in late.value.details()
        leaving = stub.ModelInfer(_slow_request(6), timeout=30)
        await asyncio.sleep(0.2)
        leaving.cancel()
        await running
        await asyncio.sleep(0.3)  # the waiter sees its client gone within one wait slice
    assert model.computed == [0.0, 1.0, 2.0, 4.0]  # 3 refused, 5 refused, 6 left before its turn


async def _admitted(stub: Any, request: Any) -> Any:
    """The call's answer once the limit admits it: grpc.aio's own limit frees a place up to a few hundred ms
    after its call's client has the answer (measured: refused at once, admitted 0.5 s later)."""
    for _ in range(20):
        try:
            return await stub.ModelInfer(request, timeout=30)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
        await asyncio.sleep(0.1)
    raise AssertionError("the call limit never admitted a call after the calls in progress were done")


@pytest.mark.parametrize("transport", ["sync", "aio"])
@pytest.mark.parametrize("pushback", [True, False, None])
async def test_call_limit_refuses_at_once_with_pushback_or_grpcios_refusal(tmp_path, pushback: bool | None,
                                                                           transport: str) -> None:
    """INFERSUITE_MAX_CONCURRENT_RPCS=2 (on the synchronous transport with 2 threads, or on grpc.aio): with two
    slow calls in progress a third is refused at once, RESOURCE_EXHAUSTED: by the suite's limit with
    grpc-retry-pushback-ms and counted, or (call_limit_pushback=False) by grpcio's, without either; by default
    (None) the suite's on the synchronous transport, grpcio's on grpc.aio. It was never computed, and once the
    two are done a call is admitted again. On grpc.aio the suite's limit leaves health's methods out: a probe at
    the limit is answered SERVING."""
    ours = pushback if pushback is not None else transport == "sync"
    model = SlowModel(compute_s=0.6)
    (tmp_path / "repo").mkdir()
    async with serving([SlowService(model, max_queue_size=8)], tmp_path / "repo", transport=transport,
                       transport_threads=2, max_concurrent_rpcs=2, call_limit_pushback=pushback,
                       warmup_runs=0) as served, grpc.aio.insecure_channel(served.address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        busy = [asyncio.ensure_future(stub.ModelInfer(_slow_request(v), timeout=30)) for v in (1, 2)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        call = stub.ModelInfer(_slow_request(3), timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        waited = time.monotonic() - started
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        trailing = dict(await call.trailing_metadata())
        if ours:
            assert "limit of 2 calls" in refused.value.details()
            assert int(trailing["grpc-retry-pushback-ms"]) >= 1
        else:
            assert refused.value.details() == "Concurrent RPC limit exceeded!"
            assert "grpc-retry-pushback-ms" not in trailing
        if ours and transport == "aio":
            probe = health_pb2_grpc.HealthStub(channel)
            answer = await probe.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert waited < 0.3, f"the refusal waited {waited:.2f} s behind the calls in progress"
        await asyncio.gather(*busy)
        assert (await _admitted(stub, _slow_request(4))).outputs[0].name == "y"
        samples = scrape(served.metrics_url)
        assert metric(samples, "infersuite_refused_calls_total", reason="call_limit") == (1 if ours else 0)
    assert sorted(model.computed) == [1.0, 2.0, 4.0]


async def test_a_stream_past_the_suites_limit_on_grpc_aio_ends_at_once_with_pushback(tmp_path) -> None:
    """The suite's limit on grpc.aio refuses a stream as it refuses a unary call: with two slow calls in their
    places, ModelStreamInfer ends RESOURCE_EXHAUSTED with grpc-retry-pushback-ms, nothing read or computed."""
    model = SlowModel(compute_s=0.6)
    (tmp_path / "repo").mkdir()
    async with serving([SlowService(model, max_queue_size=8)], tmp_path / "repo", max_concurrent_rpcs=2,
                       call_limit_pushback=True, warmup_runs=0) as served, \
            grpc.aio.insecure_channel(served.address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        busy = [asyncio.ensure_future(stub.ModelInfer(_slow_request(v), timeout=30)) for v in (1, 2)]
        await asyncio.sleep(0.3)
        stream = stub.ModelStreamInfer(iter([_slow_request(3)]), timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in stream:
                pass
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit of 2 calls" in refused.value.details()
        assert int(dict(await stream.trailing_metadata())["grpc-retry-pushback-ms"]) >= 1
        await asyncio.gather(*busy)
    assert sorted(model.computed) == [1.0, 2.0]
