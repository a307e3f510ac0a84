"""`make loadtest` as a new user meets it: every service of the suite on the shipped models, the
splitcompute payloads written by the edge SDK, OIP progress named by model, server figures from the
metrics port of the suite it started; generator errors reported at once; nothing ends in a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.splitcompute.payloads import write_payloads
from infersuite.loadtest.engine import Target
from infersuite.loadtest.generators import GeneratorError
from infersuite.loadtest.workers import GeneratorSpec, WorkerPool

pytestmark = pytest.mark.integration
SHIPPED = Path(__file__).resolve().parents[2] / "shipped_models"


def _suite(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "infersuite.loadtest", "suite", "--repository", str(SHIPPED),
               "--out-dir", str(out), "--duration", "0.5", "--warmup", "0.2", "--concurrency", "1", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


def test_a_worker_reports_its_generator_error_instead_of_hanging() -> None:
    with (pytest.raises(GeneratorError, match="needs --param payloads"),
          WorkerPool(Target("127.0.0.1:1"), GeneratorSpec("splitcompute"), workers=1)):
        pass


def test_suite_with_every_run_skipped_writes_its_summary_into_a_new_directory(tmp_path: Path) -> None:
    out = tmp_path / "not" / "there" / "yet"
    done = _suite(out, "--start-server", "ctr", "--skip", "health", "--skip", "ctr", "--skip", "oip")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert (out / "summary.md").is_file()


@pytest.mark.slow
def test_every_service_of_the_suite_on_the_shipped_models(tmp_path: Path) -> None:
    payloads = tmp_path / "payloads"
    write_payloads(SHIPPED / "splitcompute-encoder-fp32" / "1", payloads, count=16)
    out = tmp_path / "loadtest"
    done = _suite(out, "--start-server", "ctr,segmentation,splitcompute,audio",
                  "--param", f"splitcompute.payloads={payloads}")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "skipped" not in (out / "summary.md").read_text()
    assert "oip-din-fp32 " in done.stderr  # progress lines name the model
    for name in ("health", "ctr", "segmentation", "splitcompute", "audio", "oip-din-fp32",
                 "oip-splitcompute-server-fp32", "oip-audio-passt-fp32"):
        report = json.loads((out / name / "report.json").read_text())
        for step in report["steps"]:
            assert step["ok"] > 0 and not step["errors"] and not step["check_failures"], (name, step)
    ctr = json.loads((out / "ctr" / "report.json").read_text())
    assert ctr["steps"][0]["server"], "server-side figures from the started suite's metrics port"
