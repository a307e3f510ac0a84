"""The suite launcher (infersuite/loadtest/local_suite.py) on a real `python -m infersuite.services` (tiny DIN):
pinned to a core, SERVING through the sync and the async wait, health per service, a clean SIGTERM exit; a suite
that cannot start fails at once with its own message; the benchmarks' entry points run on it."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request

import grpc
import pytest

from benchmarks._server import start_server, stop_server
from benchmarks.serving import servers
from infersuite.loadtest.local_suite import SERVING, ServerExited, ServerProcess, check_health, loopback_settings

pytestmark = pytest.mark.integration
CTR = "infersuite.ctr.v1.CtrService"


def test_a_pinned_suite_is_serving_after_wait_ready_and_exits_cleanly_on_sigterm(tiny_ctr) -> None:
    core = max(os.sched_getaffinity(0))
    with ServerProcess(loopback_settings(tiny_ctr.repository), cores={core}) as server:
        server.wait_ready(timeout_s=120)
        assert server.health() == SERVING and server.health(CTR) == SERVING
        assert check_health(server.target, fresh=True) == SERVING
        with pytest.raises(grpc.RpcError):
            check_health(server.target, "no.such.Service")
        assert os.sched_getaffinity(server.pid) == {core}
        with urllib.request.urlopen(server.metrics_url, timeout=10) as reply:
            assert b"infersuite_model_ready" in reply.read()
        assert server.stop(grace_s=30) == 0  # drained and exited by itself, not killed
    assert not server.alive()


async def test_ready_awaits_serving_on_the_event_loop(tiny_ctr) -> None:
    server = ServerProcess(loopback_settings(tiny_ctr.repository), stderr=subprocess.PIPE)
    try:
        await server.ready(timeout_s=120)
        assert server.health(CTR) == SERVING
    finally:
        assert server.stop() == 0


def test_a_suite_that_cannot_start_fails_at_once_with_its_own_message(tmp_path) -> None:
    started = time.monotonic()
    settings = loopback_settings(tmp_path / "missing")
    with pytest.raises(ServerExited, match="exited with code 1 before it announced") as failure:
        ServerProcess(settings, stderr=subprocess.PIPE, start_timeout_s=120)
    assert f"INFERSUITE_MODEL_REPOSITORY={tmp_path / 'missing'}: no such directory" in str(failure.value)
    assert time.monotonic() - started < 60


def test_the_benchmarks_start_their_servers_through_the_launcher(tiny_ctr) -> None:
    proc, port = start_server(tiny_ctr.repository)
    try:
        assert check_health(f"127.0.0.1:{port}", CTR) == SERVING
    finally:
        assert stop_server(proc) == 0
    core = max(os.sched_getaffinity(0))
    with servers.suite(tiny_ctr.repository, {core}, INFERSUITE_GRACE_PERIOD_S="5") as server:
        assert check_health(server.target, CTR) == SERVING and os.sched_getaffinity(server.pid) == {core}
        assert server.configuration["cores"] == str(core)
        assert "INFERSUITE_CTR_MODEL=din-fp32" in server.configuration["settings"]
        assert "INFERSUITE_GRACE_PERIOD_S=5" in server.configuration["settings"]
    assert server.process.poll() is not None
    with pytest.raises(SystemExit, match="exited with code 1 before it announced"):
        start_server(tiny_ctr.repository / "missing")
