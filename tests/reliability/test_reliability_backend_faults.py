"""Backend faults: Triton killed mid-load (backend = triton), and a model version that fails to
load while the previous one keeps serving (hot reload, services/runtime/reload.py)."""

from __future__ import annotations

import asyncio
import shutil
import time

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from protos import ctr_pb2
from services.ctr import CtrService, CtrSettings
from services.runtime import RuntimeSettings, build_server
from tests.fixtures import write_add_one_onnx
from tests.integration.test_triton_backend import LocalTriton
from tests.reliability.load import metric, open_loop, scrape
from tests.reliability.requests import ctr_requests

pytestmark = [pytest.mark.reliability, pytest.mark.integration]
MODEL = "din-fp32"


async def _serve(repository, **settings):
    runtime = RuntimeSettings(port=0, metrics_port=0, host="127.0.0.1", model_repository=repository,
                              load_retry_s=0.2, **settings)
    server, port = await build_server(runtime, [CtrService(CtrSettings())])
    await server.start()
    await server.wait_ready(timeout=90)
    return server, grpc.aio.insecure_channel(f"127.0.0.1:{port}")


async def test_killing_triton_mid_load_gives_prompt_unavailable_and_recovery(tiny_ctr, tmp_path) -> None:
    triton = LocalTriton(tiny_ctr.repository, tmp_path)
    triton.start()
    server, channel = await _serve(tiny_ctr.repository, backend="triton", triton_url=f"127.0.0.1:{triton.port}",
                                   triton_timeout_s=3.0)
    make = ctr_requests(tiny_ctr.n_items, tiny_ctr.n_categories)
    deadline_s = 1.0
    try:
        load = asyncio.create_task(open_loop(channel, make, rate=20.0, duration_s=4.0, timeout_s=deadline_s))
        await asyncio.sleep(1.5)
        killed = time.monotonic()
        await asyncio.to_thread(triton.kill)
        result = await load
        after = [o for o in result.outcomes if result.started + o.intended >= killed + 0.2]
        before = [o for o in result.outcomes if result.started + o.intended + o.latency_s < killed]
        assert before and all(o.code == "OK" for o in before), result.summary()
        assert after and {o.code for o in after} == {"UNAVAILABLE"}, result.summary()  # prompt, never a hang
        assert max(o.latency_s for o in after) < 0.5 * deadline_s, result.summary()
        inflight = metric(scrape(f"http://127.0.0.1:{server.metrics_port}/metrics"),
                          "infersuite_model_inflight_requests", model=MODEL)
        assert inflight == 0  # nothing left hanging inside the server either

        await asyncio.to_thread(triton.start)  # same port: the channel reconnects by itself
        back = time.monotonic()
        recovered = None
        while recovered is None and time.monotonic() - back < 20:
            try:
                await channel.unary_unary(make(0)[0])(make(0)[1], timeout=deadline_s)
                recovered = time.monotonic() - back
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
        assert recovered is not None and recovered < 10.0, recovered
        steady = await open_loop(channel, make, rate=20.0, duration_s=1.0, timeout_s=deadline_s)
        assert steady.codes() == {"OK": steady.sent}, steady.summary()
    finally:
        await channel.close()
        await server.stop(0)
        triton.kill()


def _score(channel: grpc.aio.Channel, make) -> asyncio.Future:
    method, payload = make(0)
    return channel.unary_unary(method, response_deserializer=ctr_pb2.ScoreResponse.FromString)(payload, timeout=5)


async def test_a_version_that_fails_to_load_keeps_the_previous_one_serving(tiny_ctr, tmp_path) -> None:
    repository = tmp_path / "repo"
    shutil.copytree(tiny_ctr.repository, repository)
    server, channel = await _serve(repository)
    make = ctr_requests(tiny_ctr.n_items, tiny_ctr.n_categories)
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    oip = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    try:
        broken = repository / MODEL / "2"
        broken.mkdir()
        (broken / "model.onnx").write_bytes(b"\x08\x07this is not an ONNX protobuf")
        load = asyncio.create_task(open_loop(channel, make, rate=30.0, duration_s=2.0))
        outcomes = await server.reloader.poll_once()
        assert [(o.version, o.state) for o in outcomes] == [("2", "failed")], outcomes
        assert (await _score(channel, make)).model.version == "1"  # the previous version still serves
        assert metric(scrape(url), "infersuite_model_load_failures_total", model=MODEL) == 1
        index = await oip.RepositoryIndex(service_pb2.RepositoryIndexRequest())
        entries = {(m.name, m.version): m for m in index.models}
        assert entries[(MODEL, "1")].state == "READY"
        assert entries[(MODEL, "2")].state == "UNAVAILABLE" and "failed to load" in entries[(MODEL, "2")].reason
        assert await server.reloader.poll_once() == []  # the same broken file is not retried every poll
        assert (await load).codes() == {"OK": (await load).sent}  # no request failed meanwhile

        write_add_one_onnx(broken / "model.onnx")  # loads, but cannot serve ctr's inputs: warm-up fails
        outcomes = await server.reloader.poll_once()
        assert [(o.version, o.state) for o in outcomes] == [("2", "failed")], outcomes
        assert metric(scrape(url), "infersuite_model_load_failures_total", model=MODEL) == 2

        shutil.copy(repository / MODEL / "1" / "model.onnx", broken / "model.onnx")  # the graph, without meta.json
        outcomes = await server.reloader.poll_once()
        assert [(o.version, o.state) for o in outcomes] == [("2", "failed")] and "meta.json" in outcomes[0].reason

        shutil.copy(repository / MODEL / "1" / "meta.json", broken / "meta.json")  # now a good version 2
        load = asyncio.create_task(open_loop(channel, make, rate=30.0, duration_s=2.0))
        await asyncio.sleep(0.5)
        outcomes = await server.reloader.poll_once()
        assert [(o.version, o.state) for o in outcomes] == [("2", "swapped")], outcomes
        assert (await load).codes() == {"OK": (await load).sent}  # the swap lost no request under load
        assert (await _score(channel, make)).model.version == "2"
        index = await oip.RepositoryIndex(service_pb2.RepositoryIndexRequest())
        assert [(m.version, m.state, m.reason) for m in index.models if m.name == MODEL] == [("2", "READY", "")]
    finally:
        await channel.close()
        await server.stop(0)
