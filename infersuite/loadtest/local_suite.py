"""The one launcher of a suite process, for the load test, the benchmarks and the tests.

ServerProcess runs `python -m infersuite.services` (or any server that prints the suite's start line) as a child
process: settings through its environment, optionally pinned to cores with taskset, its output to a log
file or to pipes. It reads the line that names the ports the server bound (port 0: the OS picks them),
waits for grpc.health SERVING (sync or async) and fails at once, with the server's output, when the
process exits first; stop() sends SIGTERM, waits, then kills.

LocalSuite is `suite --start-server ctr,audio`: the suite on loopback for the length of a load test
(a subprocess, not an import: the harness stays independent of the service code).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
SUITE_COMMAND = (sys.executable, "-m", "infersuite.services")
# The line `python -m infersuite.services` prints once bound (infersuite/services/__main__.py,
# infersuite/services/runtime/worker_pool.py).
SUITE_STARTED = re.compile(r"gRPC on port (?P<port>\d+)(?:, metrics on port (?P<metrics_port>\d+|None))?")
POLL_S = 0.2  # between health checks while waiting for SERVING
OUTPUT_TAIL_CHARS = 4000  # of the server's output, in a failure's message
SETTLE_S = 20.0  # LocalSuite: after a service failed to load, time the others get to finish loading


class LaunchError(RuntimeError):
    """The server did not get to SERVING; the message carries what it wrote."""


class ServerExited(LaunchError):
    """The server process ended before it announced its ports or before it was SERVING."""


class ServerNotReady(LaunchError):
    """The server was still running, but not announced or not SERVING, when the wait's time was up."""


def pinned(command: Sequence[str], cores: Collection[int] | None) -> list[str]:
    """`command` under taskset on `cores`, or as it is without cores. taskset pins the process before
    its first instruction and execs it (same pid), so every thread it starts inherits the cores."""
    if not cores:
        return list(command)
    return ["taskset", "--cpu-list", ",".join(map(str, sorted(cores))), *command]


def loopback_settings(repository: Path, services: Sequence[str] = ("ctr",), *, workers: int | str | None = 1,
                      log_level: str | None = "WARNING", **env: str) -> dict[str, str]:
    """INFERSUITE_* for a suite on 127.0.0.1 on ports the OS picks (the server announces them), `workers`
    serving processes, `log_level`; None leaves a setting to the environment. `env` goes over them."""
    settings = {"INFERSUITE_HOST": "127.0.0.1", "INFERSUITE_PORT": "0", "INFERSUITE_METRICS_HOST": "127.0.0.1",
                "INFERSUITE_METRICS_PORT": "0", "INFERSUITE_SERVICES": json.dumps(list(services)),
                "INFERSUITE_MODEL_REPOSITORY": str(repository)}
    if workers is not None:
        settings["INFERSUITE_WORKERS"] = str(workers)
    if log_level is not None:
        settings["INFERSUITE_LOG_LEVEL"] = log_level
    return {**settings, **env}


def check_health(address: str, service: str = "", timeout_s: float = 2.0, fresh: bool = False) -> int:
    """The health status of `service` ("" = the whole server); grpc.RpcError when it cannot be asked.
    `fresh`: on a connection of its own, so that with several workers it lands on any of them."""
    options = [("grpc.use_local_subchannel_pool", 1)] if fresh else []
    with grpc.insecure_channel(address, options=options) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return int(health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout_s).status)


def health(address: str, service: str = "", timeout_s: float = 2.0) -> int | None:
    """The health status of `service` ("" = the whole server), None if it cannot be asked."""
    try:
        return check_health(address, service, timeout_s)
    except grpc.RpcError:
        return None


def terminate(process: subprocess.Popen, grace_s: float = 30.0) -> int:
    """SIGTERM, up to `grace_s` for the process to drain and exit, then SIGKILL (at once when grace_s
    is 0); its exit code. Idempotent."""
    if process.poll() is None and grace_s > 0:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    if process.poll() is None:
        process.kill()
    return process.wait()


def _available(stream: IO[str] | None) -> str:
    """What a pipe holds now, without waiting for more: a worker the server left behind may keep it open."""
    if stream is None or stream.closed:
        return ""
    chunks, fd = [], stream.fileno()
    while select.select([fd], [], [], 0.1)[0] and (chunk := os.read(fd, 65536)):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _described(command: Sequence[str]) -> str:
    """`python -m infersuite.services` rather than the interpreter's full path."""
    return " ".join(["python" if arg == sys.executable else arg for arg in command])


class ServerProcess:
    """A server child process: `proc`, the ports it announced, readiness waits, health, stop.

        with ServerProcess(loopback_settings(repository), cores={1}) as server:
            server.wait_ready()          # or `await server.ready()`
            ...                          # server.target, server.metrics_url, server.pid

    `log`: stdout and stderr go to that file, else stdout is a pipe (it carries the start line) and
    stderr goes where `stderr` says (subprocess.PIPE, DEVNULL, or None: this process's stderr).
    `env` goes over this process's environment. Construction returns once the start line is read,
    within `start_timeout_s`, or stops the process and raises LaunchError.
    """

    def __init__(self, env: Mapping[str, str] | None = None, *, command: Sequence[str] = SUITE_COMMAND,
                 cores: Collection[int] | None = None, log: Path | None = None, stderr: int | None = None,
                 cwd: Path | None = None, started: re.Pattern[str] = SUITE_STARTED, start_timeout_s: float = 120.0):
        self.name, self.log = _described(command), log
        output = log.open("wb") if log is not None else None
        with output or contextlib.nullcontext():  # the child holds its own copy of the log's descriptor
            self.proc = subprocess.Popen(pinned(command, cores), cwd=cwd, env={**os.environ, **(env or {})},
                                         stdin=subprocess.DEVNULL, stdout=output or subprocess.PIPE,
                                         stderr=subprocess.STDOUT if output else stderr, text=True)
        try:
            self.announcement = self._announcement(started, time.monotonic() + start_timeout_s)
        except BaseException:
            terminate(self.proc, grace_s=0)
            raise
        found = started.search(self.announcement)
        assert found is not None  # _announcement returns a matching line
        self.port = int(found["port"])
        metrics = found.groupdict().get("metrics_port")
        self.metrics_port = int(metrics) if metrics and metrics.isdigit() else None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics" if self.metrics_port else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def output(self) -> str:
        """The tail of what the server wrote that this process can still see: the log's end, or what its
        pipes hold now."""
        if self.log is not None:
            text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        else:
            text = _available(self.proc.stdout) + _available(self.proc.stderr)
        return text[-OUTPUT_TAIL_CHARS:]

    def _failure(self, error: type[LaunchError], what: str) -> LaunchError:
        output = self.output().strip()
        if output:
            where = f"; its output{f' ({self.log})' if self.log else ''}:\n{output}"
        else:
            where = "; its stderr went to this process's stderr" if self.proc.stderr is None and not self.log else ""
        return error(f"`{self.name}` {what}{where}")

    def _check_waiting(self, deadline: float, what: str) -> None:
        """Raises once the process has exited or the deadline has passed."""
        if self.proc.poll() is not None:
            raise self._failure(ServerExited, f"exited with code {self.proc.returncode} before {what}")
        if time.monotonic() > deadline:
            raise self._failure(ServerNotReady, f"was still running but not {what} when the wait ended")

    def _announcement(self, started: re.Pattern[str], deadline: float) -> str:
        """The start line: the first line on the stdout pipe, or the first matching line of the log."""
        if self.log is not None:
            while not (found := started.search(self.log.read_text(errors="replace"))):
                self._check_waiting(deadline, "it announced its ports")
                time.sleep(0.1)
            return found.group(0)
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], max(deadline - time.monotonic(), 0))[0]:
            raise self._failure(ServerNotReady, "printed no start line in time")
        line = self.proc.stdout.readline()  # print(..., flush=True): one write, a whole line
        if not line:  # end of file: the process is ending
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            self._check_waiting(deadline, "it announced its ports")
        if not started.search(line):
            terminate(self.proc, grace_s=0)
            raise self._failure(ServerExited, f"did not start: its first line was {line!r}")
        return line.strip()

    def _serving(self, stub: health_pb2_grpc.HealthStub) -> bool:
        with contextlib.suppress(grpc.RpcError):
            return bool(stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == SERVING)
        return False

    def wait_ready(self, timeout_s: float = 180.0, enough: Callable[[], bool] | None = None) -> None:
        """Blocks until the overall health is SERVING, or until `enough()` says to go on without it;
        ServerExited (with its output) as soon as the process ends, ServerNotReady after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with grpc.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_waiting(deadline, "SERVING")
                if self._serving(stub) or (enough is not None and enough()):
                    return
                time.sleep(POLL_S)

    async def ready(self, timeout_s: float = 180.0) -> None:
        """wait_ready for an event loop: awaits SERVING without blocking the loop."""
        deadline = time.monotonic() + timeout_s
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest()
            while True:
                self._check_waiting(deadline, "SERVING")
                with contextlib.suppress(grpc.RpcError):
                    if (await stub.Check(request, timeout=2)).status == SERVING:
                        return
                await asyncio.sleep(POLL_S)

    def health(self, service: str = "", timeout_s: float = 2.0) -> int | None:
        """This server's health status of `service` ("" = the whole server), None if it cannot be asked."""
        return health(self.target, service, timeout_s)

    def stop(self, grace_s: float = 30.0) -> int:
        """SIGTERM, up to `grace_s` to drain, then SIGKILL (at once when grace_s is 0); the exit code."""
        return terminate(self.proc, grace_s)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalSuite:
    """`with LocalSuite(["ctr"], Path("model_repository")) as suite: suite.address, suite.metrics_url`."""

    def __init__(self, services: list[str], repository: Path, ready_timeout_s: float = 300.0, log: Path | None = None):
        self.services, self.repository, self.ready_timeout_s = services, repository, ready_timeout_s
        self.log = log
        self.server: ServerProcess | None = None
        self._failed_since: float | None = None

    @property
    def address(self) -> str:
        return self._running().target

    @property
    def metrics_url(self) -> str:
        return self._running().metrics_url

    def _running(self) -> ServerProcess:
        if self.server is None:
            raise RuntimeError("the suite is not started: use `with LocalSuite(...) as suite`")
        return self.server

    def __enter__(self) -> LocalSuite:
        # One serving process unless the caller's environment asks for more (INFERSUITE_WORKERS); the
        # log level is the caller's too: the log is for reading.
        settings = loopback_settings(self.repository, self.services, log_level=None,
                                     workers=os.environ.get("INFERSUITE_WORKERS", "1"))
        self.server = ServerProcess(settings, log=self.log, stderr=subprocess.DEVNULL,
                                    start_timeout_s=self.ready_timeout_s)
        try:
            self.server.wait_ready(self.ready_timeout_s, enough=self._settled_without_a_service)
        except BaseException:
            self.server.stop()
            raise
        return self

    def _settled_without_a_service(self) -> bool:
        """A service whose models fail to load keeps the server NOT_SERVING for good (the runtime logs
        "could not load its models"): once the log says so and nothing changed for SETTLE_S, the suite
        goes on and that service is skipped later."""
        failed = self.log is not None and "could not load its models" in self.log.read_text(errors="ignore")
        if self._failed_since is None and failed:
            self._failed_since = time.monotonic()
        return self._failed_since is not None and time.monotonic() - self._failed_since > SETTLE_S

    def alive(self) -> bool:
        return self.server is not None and self.server.alive()

    def exit_code(self) -> int | None:
        return self.server.exit_code() if self.server is not None else None

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()
