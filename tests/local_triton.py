"""Waiting for a local tritonserver in tests: a Triton that cannot run on this machine (it dies
before it ever listens) skips the test with its log; a Triton that runs but never serves the
model (a config.pbtxt or graph it rejects, a hang) FAILS it, since that is a regression, not a
missing tool. Start it with `triton_local.launch(..., exit_on_error=False)` so that a model it
rejects leaves the server up and the difference shows."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import tritonclient.grpc as triton_grpc

from exporters import triton_local


class TritonNeverReady(AssertionError):
    """tritonserver ran, but the models never became ready: a failure, never a skip."""


def wait_until_ready(port: int, proc: subprocess.Popen, log: Path, models: Sequence[str], timeout: float = 90) -> None:
    """Returns once every model is ready; raises TritonNeverReady if tritonserver runs (or ran: it
    answered as live) but they never are; raises triton_local.TritonUnavailable if it exited
    before it ever listened (it cannot run here)."""
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
    deadline, live, failed = time.monotonic() + timeout, False, ""
    while time.monotonic() < deadline and proc.poll() is None and not failed:
        try:
            live = live or client.is_server_live()
            if live and all(client.is_model_ready(model) for model in models):
                return
            if live:  # Triton listens once its startup loads are done: a model it could not load will not be
                index = client.get_model_repository_index(as_json=True).get("models", [])
                failed = "; ".join(f"{m['name']}: {m['reason']}" for m in index
                                   if m.get("name") in models and m.get("state") == "UNAVAILABLE" and m.get("reason"))
        except Exception:  # not listening yet
            pass
        if not failed:
            time.sleep(0.3)
    running = proc.poll() is None
    triton_local.kill(proc)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    if failed:
        raise TritonNeverReady(f"tritonserver ran but {', '.join(models)} never became ready: it failed to load "
                               f"({failed}):\n{tail}")
    if live or running:
        raise TritonNeverReady(f"tritonserver {'ran' if live else 'kept running'} but {', '.join(models)} never "
                               f"became ready within {timeout:.0f} s:\n{tail}")
    raise triton_local.TritonUnavailable(f"tritonserver exited ({proc.returncode}) before it listened:\n{tail}")


def skip_if_unavailable(error: triton_local.TritonUnavailable) -> None:
    pytest.skip(f"tritonserver cannot run here (`make triton`): {error}")
