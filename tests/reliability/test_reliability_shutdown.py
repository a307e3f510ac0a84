"""SIGTERM under load: a real suite process (tests/reliability/sleepy.py) drains and exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infersuite.loadtest.local_suite import ServerProcess
from tests.reliability import sleepy
from tests.reliability.scenarios import graceful_shutdown

pytestmark = [pytest.mark.reliability, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
# A backlog of 50 executions of 40 ms (2 s of drain, longer on a loaded machine) against a grace period
# the drain never reaches on any machine that runs these tests at all.
COMPUTE_MS, BACKLOG, GRACE_S = 40.0, 50, 20.0


def start_sleepy(compute_ms: float, queue: int, grace_s: float) -> tuple[subprocess.Popen, int]:
    """The sleepy suite process through the one launcher (infersuite/loadtest/local_suite.py): its process and port."""
    server = ServerProcess({"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
                           command=[sys.executable, "-m", "tests.reliability.sleepy", "--compute-ms", str(compute_ms),
                                    "--queue", str(queue), "--grace", str(grace_s)], cwd=ROOT)
    return server.proc, server.port


async def test_sigterm_under_load_drains_in_flight_refuses_new_and_exits_within_grace() -> None:
    """Orders, not durations: SIGTERM lands while the server holds a backlog of BACKLOG executions; every
    request sent before it completes, every one sent after it is refused, and the first refusal is
    answered before the backlog has drained (a server that queued new requests, or made them wait for
    the drain, fails). The one time bound is the grace period itself, 10x the drain."""
    proc, port = start_sleepy(COMPUTE_MS, queue=BACKLOG + 64, grace_s=GRACE_S)
    try:
        figures = await graceful_shutdown(proc, port, sleepy.request, rate=20.0, before_s=1.0, after_s=1.0,
                                          grace_s=GRACE_S, backlog=BACKLOG, end_watch=True)
    finally:
        proc.kill()
        proc.wait()
    assert figures.in_flight_at_signal >= BACKLOG - 1, figures  # the signal really landed under load
    assert figures.codes_before_signal == {"OK": figures.sent_before_signal}, figures  # every one completed
    assert set(figures.codes_after_signal) == {"UNAVAILABLE"}, figures  # new ones refused, nothing else
    assert figures.health_not_serving_after_s is not None, figures  # watchers were told before the stop
    assert figures.first_refusal_after_s is not None and figures.drained_after_s is not None, figures
    assert figures.first_refusal_after_s < figures.drained_after_s, figures  # refused at once, not after the drain
    # Exit 0 once drained (the health watcher left at NOT_SERVING), not at the end of the grace period: a
    # server that sat out its 20 s grace fails.
    assert figures.exit_code == 0 and figures.exit_after_s < GRACE_S, figures
