"""`python -m loadtest suite` against a real infersuite server hosting ctr (+ the OIP servicer)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from services.ctr import CtrService
from services.runtime import RuntimeSettings, build_server

pytestmark = pytest.mark.integration


async def test_suite_writes_a_report_per_service_with_server_figures(tiny_ctr, tmp_path):
    settings = RuntimeSettings(port=0, metrics_port=0, host="127.0.0.1", model_repository=tiny_ctr.repository)
    server, port = await build_server(settings, [CtrService()])
    await server.start()
    await server.wait_ready(timeout=60)
    command = [sys.executable, "-m", "loadtest", "suite", "--target", f"127.0.0.1:{port}",
               "--metrics-url", f"http://127.0.0.1:{server.metrics_port}/metrics",
               "--repository", str(tiny_ctr.repository), "--out-dir", str(tmp_path),
               "--duration", "1", "--warmup", "0.3", "--concurrency", "1,4", "--quiet"]
    try:
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=240)
    finally:
        await server.stop(0)
    assert done.returncode == 0, done.stderr
    summary = (tmp_path / "summary.md").read_text()
    for name in ("health", "ctr", "oip-din-fp32"):
        assert f"[{name}/report.md]" in summary
        for png in ("latency_vs_load.png", "throughput_vs_load.png", "latency_cdf.png"):
            assert (tmp_path / name / png).stat().st_size > 5_000
    ctr = json.loads((tmp_path / "ctr" / "report.json").read_text())
    assert ctr["metadata"]["requests"]["n_items"] == tiny_ctr.n_items  # vocabulary read from meta.json
    assert ctr["metadata"]["models"] == ["din-fp32"]
    for step in ctr["steps"]:
        assert step["ok"] > 0 and not step["errors"] and not step["check_failures"]
        server_side = {row["metric"]: row for row in step["server"]}
        assert {"request_s", "compute_s"} <= set(server_side)
        # the server saw (at least) the requests the client counted in the window
        assert server_side["request_s"]["count"] >= step["ok"] * 0.9
        assert server_side["compute_s"]["mean"] <= step["latency_from_intended_ms"]["mean_ms"]
    oip = json.loads((tmp_path / "oip-din-fp32" / "report.json").read_text())
    assert all(step["ok"] > 0 and not step["errors"] for step in oip["steps"])
