"""Starts a Python peer (MLServer or KServe) on one ONNX file, pinned to given cores, on loopback ports.

    with start_peer("kserve", Path("model.onnx"), cores={1}) as peer:
        ...  # OIP gRPC on peer.grpc_address; peer.cpu_seconds() is the CPU its processes have used

Each peer runs from its own venv (`make peers`: .peers/<kind>, or INFERSUITE_PEERS_DIR) with this repository on
PYTHONPATH for its runtime module, in a temporary work directory that holds its settings and log.
start_peer returns once OIP ModelReady is true for the model, and stops the peer again if it never gets there.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Literal

import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from benchmarks.peers.onnx_model import describe_session
from benchmarks.peers.proc import process_tree, tree_cpu_seconds

PeerKind = Literal["mlserver", "kserve"]
PEER_KINDS: tuple[PeerKind, ...] = ("mlserver", "kserve")
MODEL_NAME = "din-fp32"
REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


# How each peer runs the model, as its docs advise for a CPU model served from Python: the model inline on the
# serving thread (no executor hop, no extra process), one onnxruntime intra-op thread (describe_session).
PREDICT = {
    "mlserver": "async predict awaited inline on the event loop; parallel_workers=0 (no inference worker process, "
                "no IPC hop); debug=false (no per-call access log); one process",
    "kserve": "synchronous predict, which KServe runs on its event loop's thread; KSERVE_LOGLEVEL=WARNING; one "
              "process (KServe's --workers forks only its REST server, not gRPC)",
}


class PeerError(RuntimeError):
    """A peer is not installed, did not start, or never reported its model ready."""


def peers_dir() -> Path:
    return Path(os.environ.get("INFERSUITE_PEERS_DIR", REPO_ROOT / ".peers"))


def peer_installed(kind: PeerKind) -> bool:
    """True once `make peers` has finished installing this peer's venv."""
    return (peers_dir() / kind / ".installed").is_file()


class PeerProcess:
    """A running peer: its OIP gRPC address, its process (and any it forks), its log."""

    def __init__(self, kind: PeerKind, popen: subprocess.Popen, grpc_address: str, workdir: tempfile.TemporaryDirectory,
                 log_path: Path, configuration: dict[str, str] | None = None):
        self.kind = kind
        self.configuration = configuration or {}  # what a report prints: version, command, settings
        self.grpc_address = grpc_address
        self.log_path = log_path
        self._popen = popen
        self._workdir = workdir

    @property
    def pid(self) -> int:
        return self._popen.pid

    def pids(self) -> list[int]:
        """The peer's process and every live descendant (a peer that forks workers has several)."""
        return process_tree(self.pid)

    def cpu_seconds(self) -> float:
        """User + system CPU of the peer's live processes, all threads included, from /proc."""
        return tree_cpu_seconds(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to the peer's process group, SIGKILL after grace_s; idempotent."""
        if self._popen.poll() is None:
            _signal_group(self._popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=grace_s)
        _signal_group(self._popen.pid, signal.SIGKILL)  # whatever the peer forked and left behind
        self._popen.wait()
        self._workdir.cleanup()

    def __enter__(self) -> PeerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_peer(kind: PeerKind, onnx_path: Path, cores: set[int], intra_op_threads: int = 1,
               model_name: str = MODEL_NAME, ready_timeout_s: float = 120.0) -> PeerProcess:
    """Runs `kind` on `cores` serving `onnx_path` as `model_name`; returns when ModelReady is true."""
    if kind not in PEER_KINDS:
        raise PeerError(f"unknown peer {kind!r}; the peers are {', '.join(PEER_KINDS)}")
    python = peers_dir() / kind / "bin" / "python"
    if not peer_installed(kind):
        raise PeerError(f"{kind} is not installed in {python.parent.parent}: run `make peers`")
    if not cores or not cores <= os.sched_getaffinity(0):
        raise PeerError(f"cores {sorted(cores)} are not a non-empty subset of {sorted(os.sched_getaffinity(0))}")
    workdir = tempfile.TemporaryDirectory(prefix=f"peer-{kind}-")
    root = Path(workdir.name)
    grpc_port, *other_ports = _free_ports(3)
    build = _mlserver_command if kind == "mlserver" else _kserve_command
    command, env = build(python, root, Path(onnx_path).resolve(), model_name, intra_op_threads, grpc_port, other_ports)
    log_path = root / "peer.log"
    with log_path.open("wb") as log:
        # taskset pins the peer before its first instruction, so every thread it starts inherits the cores; it
        # execs the peer (same pid). A preexec_fn would do the same but is unsafe in a threaded benchmark driver.
        pinned = ["taskset", "--cpu-list", ",".join(map(str, sorted(cores))), *command]
        popen = subprocess.Popen(pinned, cwd=root, env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)},
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    peer = PeerProcess(kind, popen, f"{LOOPBACK}:{grpc_port}", workdir, log_path,
                       describe(kind, root, command, env, intra_op_threads, cores))
    try:
        _wait_until_ready(peer, popen, model_name, ready_timeout_s)
    except BaseException:
        peer.stop(grace_s=2.0)
        raise
    return peer


def describe(kind: PeerKind, root: Path, command: list[str], env: dict[str, str], intra_op_threads: int,
             cores: set[int]) -> dict[str, str]:
    """A started peer's configuration, from what start_peer actually passed it."""
    described = {"version": pinned_version(kind), "cores": ",".join(map(str, sorted(cores))),
                 "model": describe_session(intra_op_threads), "predict": PREDICT[kind],
                 "command": " ".join(Path(command[0]).name if i == 0 else a for i, a in enumerate(command)),
                 "environment": " ".join(f"{k}={v}" for k, v in sorted(env.items())) or "-"}
    for name in ("settings.json", f"{MODEL_NAME}/model-settings.json"):  # MLServer's
        if (root / name).is_file():
            text = json.dumps(json.loads((root / name).read_text()), sort_keys=True)
            described[name] = text.replace(str(root), "<its work directory>").replace(str(REPO_ROOT) + "/", "")
    return described


def pinned_version(kind: PeerKind) -> str:
    """`kind==X.Y.Z` from benchmarks/peers/requirements-<kind>.txt (what `make peers` installs)."""
    requirements = Path(__file__).with_name(f"requirements-{kind}.txt").read_text().splitlines()
    return next((line.split("#")[0].strip() for line in requirements if line.lower().startswith(f"{kind}==")), kind)


def _wait_until_ready(peer: PeerProcess, popen: subprocess.Popen, model_name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with triton.InferenceServerClient(peer.grpc_address) as client:
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                raise PeerError(f"{peer.kind} exited with code {popen.returncode} before {model_name!r} was ready;"
                                f" its log ends:\n{peer.log_tail()}")
            try:
                if client.is_model_ready(model_name, client_timeout=2.0):
                    return
            except InferenceServerException:
                pass  # not listening yet
            time.sleep(0.2)
    raise PeerError(f"{peer.kind} did not report {model_name!r} ready within {timeout_s:.0f} s;"
                    f" its log ends:\n{peer.log_tail()}")


def _mlserver_command(python: Path, root: Path, onnx_path: Path, model_name: str, threads: int, grpc_port: int,
                      ports: list[int]) -> tuple[list[str], dict[str, str]]:
    settings = {
        # Inference in the server process: MLServer 1.7.1's default (1) adds a worker process and an IPC hop per
        # request, and its worker pool does not start under uvloop >= 0.22.
        "parallel_workers": 0,
        # debug (default true) logs every gRPC call through an access-log interceptor; the peers run at their
        # production log levels, as KServe does with KSERVE_LOGLEVEL=WARNING.
        "debug": False,
        "host": LOOPBACK, "grpc_port": grpc_port, "http_port": ports[0], "metrics_port": ports[1],
        "metrics_dir": str(root / "metrics"),
    }
    model_settings = {
        "name": model_name,
        "implementation": "benchmarks.peers.mlserver_runtime.OnnxRuntimeModel",
        "parameters": {"uri": str(onnx_path), "extra": {"intra_op_threads": threads}},
    }
    (root / "settings.json").write_text(json.dumps(settings, indent=2))
    (root / model_name).mkdir()
    (root / model_name / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    return [str(python.parent / "mlserver"), "start", str(root)], {}


def _kserve_command(python: Path, root: Path, onnx_path: Path, model_name: str, threads: int, grpc_port: int,
                    ports: list[int]) -> tuple[list[str], dict[str, str]]:
    command = [str(python), "-m", "benchmarks.peers.kserve_runtime", "--onnx", str(onnx_path),
               "--model_name", model_name, "--intra_op_threads", str(threads),
               "--grpc_port", str(grpc_port), "--http_port", str(ports[0])]
    # KServe logs a line per request at INFO (its default level).
    return command, {"KSERVE_LOGLEVEL": "WARNING"}


def _free_ports(count: int) -> list[int]:
    """Ports the OS picked on loopback, all held until all are known so that they differ."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
