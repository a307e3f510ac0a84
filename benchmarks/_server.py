"""Starts the suite in its own process for a benchmark and waits until it is SERVING
(infersuite/loadtest/local_suite.py's launcher, as a benchmark's main wants it: a failure ends the command)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from infersuite.loadtest.local_suite import LaunchError, ServerProcess, loopback_settings, terminate


def start_server(repository: Path, services: str = '["ctr"]', **env: str) -> tuple[subprocess.Popen, int]:
    """The suite hosting `services` (a JSON list) on `repository`, one worker, no /metrics: its process
    and gRPC port once SERVING. A server that exits or is not SERVING within 120 s ends the command."""
    settings = {**loopback_settings(repository, INFERSUITE_METRICS_PORT="-1", INFERSUITE_SERVICES=services), **env}
    try:
        server = ServerProcess(settings)
    except LaunchError as err:
        raise SystemExit(f"server did not start: {err}") from None
    try:
        server.wait_ready(timeout_s=120)
    except LaunchError as err:
        server.stop(grace_s=0)
        raise SystemExit(str(err)) from None
    return server.proc, server.port


stop_server = terminate  # SIGTERM, 30 s to drain, then SIGKILL
