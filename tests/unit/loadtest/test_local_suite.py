"""The suite launcher (infersuite/loadtest/local_suite.py) on stand-in processes, no network: it reads the start
line, fails at once with the server's own output when the process ends first or prints something else,
gives up after its timeout, and stops with SIGTERM, then SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infersuite.loadtest.local_suite import (
    LocalSuite,
    ServerExited,
    ServerNotReady,
    ServerProcess,
    loopback_settings,
    pinned,
)

STARTED = "infersuite: gRPC on port 4242, metrics on port 4343"


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _announces_then_runs(*, ignore_sigterm: bool = False, line: str = STARTED) -> list[str]:
    prelude = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_sigterm else ""
    return _python(f"{prelude}import time; print({line!r}, flush=True); time.sleep(60)")


def test_pinned_prefixes_taskset_with_the_sorted_cores_and_leaves_an_unpinned_command_alone() -> None:
    assert pinned(["python", "-m", "infersuite.services"], {3, 1}) == ["taskset", "--cpu-list", "1,3", "python", "-m",
                                                                       "infersuite.services"]
    assert pinned(["python", "-m", "infersuite.services"], None) == ["python", "-m", "infersuite.services"]


def test_loopback_settings_pick_os_ports_on_loopback_and_let_the_caller_override() -> None:
    settings = loopback_settings(Path("repo"), ["ctr", "audio"], INFERSUITE_WORKERS="2", INFERSUITE_CTR_MODEL="x")
    assert settings["INFERSUITE_HOST"] == settings["INFERSUITE_METRICS_HOST"] == "127.0.0.1"
    assert settings["INFERSUITE_PORT"] == settings["INFERSUITE_METRICS_PORT"] == "0"
    assert json.loads(settings["INFERSUITE_SERVICES"]) == ["ctr", "audio"]
    assert settings["INFERSUITE_MODEL_REPOSITORY"] == "repo" and settings["INFERSUITE_CTR_MODEL"] == "x"
    assert settings["INFERSUITE_WORKERS"] == "2" and settings["INFERSUITE_LOG_LEVEL"] == "WARNING"
    left = loopback_settings(Path("repo"), workers=None, log_level=None)
    assert "INFERSUITE_WORKERS" not in left and "INFERSUITE_LOG_LEVEL" not in left


def test_the_start_line_gives_the_ports_and_metrics_none_is_no_metrics() -> None:
    with ServerProcess(command=_announces_then_runs()) as server:
        assert (server.port, server.metrics_port, server.target) == (4242, 4343, "127.0.0.1:4242")
        assert server.metrics_url == "http://127.0.0.1:4343/metrics" and server.alive()
    assert not server.alive()
    line = "infersuite: gRPC on port 4242, metrics on port None (2 workers)"
    with ServerProcess(command=_announces_then_runs(line=line)) as server:
        assert (server.port, server.metrics_port, server.metrics_url) == (4242, None, "")
        assert server.announcement == line


def test_a_server_that_exits_before_its_start_line_fails_at_once_with_its_stderr() -> None:
    started = time.monotonic()
    command = _python("import sys; sys.stderr.write('infersuite: no such directory\\n'); sys.exit(3)")
    with pytest.raises(ServerExited, match=r"exited with code 3 before it announced") as failure:
        ServerProcess(command=command, stderr=subprocess.PIPE, start_timeout_s=60)
    assert "infersuite: no such directory" in str(failure.value)
    assert time.monotonic() - started < 30  # not the start timeout


def test_without_a_captured_stderr_the_failure_says_where_the_output_went() -> None:
    with pytest.raises(ServerExited, match="its stderr went to this process's stderr"):
        ServerProcess(command=_python("import sys; sys.exit(1)"))


def test_a_log_file_takes_the_output_and_its_tail_is_in_the_failure(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    command = _python("import sys; print('loading...', flush=True); sys.stderr.write('bad model\\n'); sys.exit(2)")
    with pytest.raises(ServerExited, match="exited with code 2") as failure:
        ServerProcess(command=command, log=log)
    assert str(log) in str(failure.value) and "loading..." in str(failure.value) and "bad model" in str(failure.value)
    assert log.read_text() == "loading...\nbad model\n"


def test_the_start_line_is_found_in_the_log_among_other_lines(tmp_path: Path) -> None:
    code = f"import sys, time; sys.stderr.write('INFO warming up\\n'); print({STARTED!r}, flush=True); time.sleep(60)"
    with ServerProcess(command=_python(code), log=tmp_path / "server.log") as server:
        assert server.port == 4242


def test_a_first_line_that_is_not_the_start_line_stops_the_process() -> None:
    with pytest.raises(ServerExited, match=r"did not start: its first line was 'hello\\n'") as failure:
        ServerProcess(command=_announces_then_runs(line="hello"))
    assert "hello" in str(failure.value)


def test_a_server_that_never_announces_is_given_up_after_the_start_timeout_and_killed() -> None:
    started = time.monotonic()
    with pytest.raises(ServerNotReady, match="printed no start line in time"):
        ServerProcess(command=_python("import time; time.sleep(60)"), start_timeout_s=0.5)
    assert time.monotonic() - started < 10


def test_wait_ready_fails_at_once_when_the_process_exited_after_announcing() -> None:
    command = _python(f"import sys; print({STARTED!r}, flush=True); sys.stderr.write('worker died\\n'); sys.exit(4)")
    server = ServerProcess(command=command, stderr=subprocess.PIPE)
    server.proc.wait(timeout=30)  # gone before the first health check: no connection is tried
    with pytest.raises(ServerExited, match=r"exited with code 4 before SERVING[\s\S]*worker died"):
        server.wait_ready(timeout_s=60)


async def test_ready_fails_at_once_when_the_process_exited_after_announcing() -> None:
    server = ServerProcess(command=_python(f"import sys; print({STARTED!r}, flush=True); sys.exit(5)"))
    server.proc.wait(timeout=30)
    with pytest.raises(ServerExited, match="exited with code 5 before SERVING"):
        await server.ready(timeout_s=60)


def test_stop_sends_sigterm_first_and_kills_what_ignores_it_after_the_grace() -> None:
    server = ServerProcess(command=_announces_then_runs())
    assert server.stop(grace_s=10) == -15  # SIGTERM ended it
    stubborn = ServerProcess(command=_announces_then_runs(ignore_sigterm=True))
    started = time.monotonic()
    assert stubborn.stop(grace_s=0.5) == -9 and time.monotonic() - started >= 0.5
    assert stubborn.stop() == -9  # idempotent
    at_once = ServerProcess(command=_announces_then_runs(ignore_sigterm=True))
    assert at_once.stop(grace_s=0) == -9


def test_a_local_suite_has_no_address_before_it_is_started() -> None:
    suite = LocalSuite(["ctr"], Path("model_repository"))
    with pytest.raises(RuntimeError, match="not started"):
        _ = suite.address
    assert not suite.alive() and suite.exit_code() is None
