"""Backend faults: Triton killed mid-load (backend = triton), and a model version that fails to
load while the previous one keeps serving (hot reload, infersuite/services/runtime/reload.py)."""

from __future__ import annotations

import asyncio
import shutil

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from exporters import triton_local
from infersuite.protos import ctr_pb2
from infersuite.services.ctr import CtrService, CtrSettings
from infersuite.services.runtime import RuntimeSettings, build_server
from tests.fixtures import write_add_one_onnx
from tests.reliability.load import metric, open_loop, scrape
from tests.reliability.requests import ctr_requests
from tests.reliability.triton_fault import triton_kill_under_load

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
    make = ctr_requests(tiny_ctr.n_items, tiny_ctr.n_categories)
    try:
        figures = await triton_kill_under_load(tiny_ctr.repository, make, tmp_path, rate=20.0, deadline_s=2.0)
    except triton_local.TritonUnavailable as exc:
        pytest.skip(f"tritonserver cannot run here (`make triton`): {exc}")
    before, after = figures["codes_before_kill"], figures["codes_after_kill"]
    assert before and set(before) == {"OK"}, figures
    # Prompt, told by the codes rather than a stopwatch: every call carries a 2 s deadline that also caps the
    # backend's call to Triton (infersuite/services/runtime/backends/triton.py), so a call that waited on the dead
    # Triton (a hang, a wait-for-ready, a retry until its timeout) would end DEADLINE_EXCEEDED, not UNAVAILABLE.
    assert after and set(after) == {"UNAVAILABLE"}, figures
    assert set(figures["load"]["codes"]) == {"OK", "UNAVAILABLE"}, figures  # those in flight at the kill too
    assert figures["load"]["unanswered"] == 0 and figures["server_inflight_after_load"] == 0, figures
    # Recovery polls for up to 20 s after Triton is ready again (generous: ~0.1-2 s here); what a
    # regression breaks is whether it comes back at all (a channel that never reconnects).
    assert figures["recovered_after_restart_s"] is not None, figures
    steady = figures["steady_after_recovery"]
    assert steady["codes"] == {"OK": steady["sent"]}, figures


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
