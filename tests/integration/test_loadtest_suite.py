"""`python -m infersuite.loadtest suite --start-server ctr`: the whole `make loadtest` path against a real
suite process (tiny DIN), with the server's /metrics joined to the client figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_suite_writes_a_report_per_service_with_server_figures(tiny_ctr, tmp_path):
    command = [sys.executable, "-m", "infersuite.loadtest", "suite", "--start-server", "ctr",
               "--repository", str(tiny_ctr.repository), "--out-dir", str(tmp_path),
               "--duration", "1", "--warmup", "0.3", "--concurrency", "1,4"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    summary = (tmp_path / "summary.md").read_text()
    for name in ("health", "ctr", "oip-din-fp32"):
        assert f"[{name}/report.md]" in summary
        for png in ("latency_vs_load.png", "throughput_vs_load.png", "latency_cdf.png"):
            assert (tmp_path / name / png).stat().st_size > 5_000
    ctr = json.loads((tmp_path / "ctr" / "report.json").read_text())
    assert ctr["metadata"]["requests"]["n_items"] == tiny_ctr.n_items  # vocabulary read from meta.json
    assert ctr["metadata"]["models"] == ["din-fp32"]
    assert [s["load"]["concurrency"] for s in ctr["steps"]] == [1, 4]
    for step in ctr["steps"]:
        assert step["ok"] > 0 and not step["errors"] and not step["check_failures"]
        server_side = {row["metric"]: row for row in step["server"]}
        assert {"request_s", "compute_s"} <= set(server_side)
        # the server saw (at least) the requests the client counted in the window
        assert server_side["request_s"]["count"] >= step["ok"] * 0.9
        assert server_side["compute_s"]["mean"] <= step["latency_from_intended_ms"]["mean_ms"]
    oip = json.loads((tmp_path / "oip-din-fp32" / "report.json").read_text())
    assert all(step["ok"] > 0 and not step["errors"] for step in oip["steps"])
    health = json.loads((tmp_path / "health" / "report.json").read_text())
    assert all(step["ok"] > 0 and not step["check_failures"] for step in health["steps"])
