"""Triton killed mid-load under backend = triton, then brought back: the scenario the reliability
test asserts and benchmarks/reliability/measure.py reports."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, cast

import grpc

from exporters import triton_local
from infersuite.services.ctr import CtrService, CtrSettings
from infersuite.services.runtime import RuntimeSettings, ServiceModule, build_server
from tests.local_triton import wait_until_ready
from tests.reliability.load import RequestFactory, metric, open_loop, scrape

MODEL = "din-fp32"


class LocalTriton:
    """tritonserver over the repository on a fixed port (restarts reuse it, so channels reconnect)."""

    def __init__(self, repository: Path, work: Path):
        self.repository, self.work, self.log = repository, work, work / "tritonserver.log"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> None:
        """Raises triton_local.TritonUnavailable when tritonserver is missing or cannot run here, and
        TritonNeverReady (a failure, not a skip) when it runs but never serves the model."""
        self.proc = triton_local.launch(self.repository, self.port, self.work, [MODEL], self.log,
                                        exit_on_error=False)
        wait_until_ready(self.port, self.proc, self.log, [MODEL], timeout)

    def kill(self) -> None:
        if self.proc is not None:
            triton_local.kill(self.proc)


async def triton_kill_under_load(repository: Path, make: RequestFactory, work: Path, rate: float = 20.0,
                                 deadline_s: float = 1.0, before_s: float = 1.5,
                                 after_s: float = 2.5) -> dict[str, Any]:
    """Load at `rate` with `deadline_s` per call; Triton is killed `before_s` in; the load goes on
    `after_s`; Triton restarts on the same port; time to the first OK and a steady second follow.
    Raises triton_local.TritonUnavailable when no tritonserver can start here."""
    work.mkdir(parents=True, exist_ok=True)
    triton = LocalTriton(repository, work)
    triton.start()
    settings = RuntimeSettings(port=0, metrics_port=0, host="127.0.0.1", model_repository=repository,
                               load_retry_s=0.2, backend="triton", triton_url=f"127.0.0.1:{triton.port}",
                               triton_timeout_s=3.0)
    server, port = await build_server(settings, [cast(ServiceModule, CtrService(CtrSettings()))])
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await server.start()
        await server.wait_ready(timeout=90)
        load = asyncio.create_task(open_loop(channel, make, rate, before_s + after_s, timeout_s=deadline_s))
        await asyncio.sleep(before_s)
        killed = time.monotonic()
        await asyncio.to_thread(triton.kill)
        result = await load
        after = [o for o in result.outcomes if result.started + o.intended >= killed + 0.2]
        before = [o for o in result.outcomes if result.started + o.intended + o.latency_s < killed]
        refusals = [result.started + o.intended + o.latency_s - killed for o in result.outcomes
                    if o.code == "UNAVAILABLE"]
        inflight = metric(scrape(f"http://127.0.0.1:{server.metrics_port}/metrics"),
                          "infersuite_model_inflight_requests", model=MODEL)
        await asyncio.to_thread(triton.start)
        back, recovered = time.monotonic(), None
        while recovered is None and time.monotonic() - back < 20:
            try:
                await channel.unary_unary(make(0)[0])(make(0)[1], timeout=deadline_s)
                recovered = time.monotonic() - back
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
        steady = await open_loop(channel, make, rate, 1.0, timeout_s=deadline_s)
    finally:
        await channel.close()
        await server.stop(0)
        triton.kill()
    return {"rate_rps": rate, "deadline_s": deadline_s, "load": result.summary(),
            "codes_before_kill": _codes(before), "codes_after_kill": _codes(after),
            "max_latency_after_kill_s": round(max((o.latency_s for o in after), default=0.0), 4),
            "first_unavailable_after_kill_s": round(min(refusals), 4) if refusals else None,
            "server_inflight_after_load": inflight, "recovered_after_restart_s": recovered and round(recovered, 2),
            "steady_after_recovery": steady.summary()}


def _codes(outcomes) -> dict[str, int]:  # type: ignore[no-untyped-def]
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.code] = counts.get(outcome.code, 0) + 1
    return counts
