"""Runs a real NVIDIA Triton Inference Server on this machine over an infersuite model repository.

The `tritonserver` binary (Triton 2.51) ships inside the nvidia-pytriton wheel, which `make
triton` unpacks into `.triton/server` (without pytriton's own dependencies). That build has only
the python backend, so every model is re-written as a python-backend model that runs the same
ONNX graph with onnxruntime (exporters/triton_python.py). Two quirks of the python backend stub,
both handled here: it needs the running interpreter's libpython on LD_LIBRARY_PATH, it ignores
PYTHONPATH (model.py reads INFERSUITE_TRITON_PYTHONPATH instead), and its tensor bridge needs
numpy 1.x (`.triton/python` holds numpy 1.26 and is searched first).

    python -m exporters.triton_local --repository model_repository --grpc-port 8001
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from exporters.triton_python import write_python_backend_model

ROOT = Path(__file__).resolve().parents[1]
TRITON_HOME = Path(os.environ.get("INFERSUITE_TRITON_HOME", ROOT / ".triton"))


class TritonUnavailable(RuntimeError):
    """The local Triton binary is missing or cannot start here."""


def server_dir() -> Path:
    path = TRITON_HOME / "server" / "pytriton" / "tritonserver"
    if not (path / "bin" / "tritonserver").is_file():
        raise TritonUnavailable(f"no tritonserver under {path}: run `make triton`")
    return path


def _backend_dir(work: Path) -> Path:
    """Triton wants the stub next to the python backend library; pick the one for this Python."""
    source = server_dir()
    stub = source / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
    backend = work / "backends" / "python"
    if (backend / "triton_python_backend_stub").is_file():  # a restart reuses the prepared directory
        return work / "backends"
    backend.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        shutil.copyfile(source / "backends" / "python" / name, backend / name)
    shutil.copyfile(stub / "triton_python_backend_stub", backend / "triton_python_backend_stub")
    os.chmod(backend / "triton_python_backend_stub", 0o755)
    return work / "backends"


def prepare(repository: Path, models: list[str] | None, work: Path) -> Path:
    """Writes the python-backend repository under `work`; returns it."""
    target = work / "repository"
    for entry in sorted(repository.iterdir()):
        if (entry / "config.pbtxt").is_file() and (models is None or entry.name in models):
            versions = sorted((p.name for p in entry.iterdir() if p.name.isdigit()), key=int)
            write_python_backend_model(entry, target, versions[-1])
    return target


def environment() -> dict[str, str]:
    libs = [sysconfig.get_config_var("LIBDIR") or "", str(TRITON_HOME / "server" / "nvidia_pytriton.libs")]
    site = sysconfig.get_paths()["purelib"]
    return {**os.environ,
            "LD_LIBRARY_PATH": os.pathsep.join([*libs, os.environ.get("LD_LIBRARY_PATH", "")]),
            "INFERSUITE_TRITON_PYTHONPATH": os.pathsep.join([str(TRITON_HOME / "python"), site])}


def launch(repository: Path, grpc_port: int, work: Path, models: list[str] | None = None,
           log_path: Path | None = None, exit_on_error: bool = True) -> subprocess.Popen:
    """Starts tritonserver (gRPC only) in the background; the caller waits for readiness.
    exit_on_error=False keeps it serving when a model fails to load (tests: a model Triton rejects
    then shows as live-but-not-ready, not as a server that could not start)."""
    command = [str(server_dir() / "bin" / "tritonserver"), "--model-repository", str(prepare(repository, models, work)),
               "--backend-directory", str(_backend_dir(work)), "--grpc-port", str(grpc_port),
               "--allow-http", "false", "--allow-metrics", "false", "--exit-timeout-secs", "5",
               "--exit-on-error", "true" if exit_on_error else "false"]
    log = open(log_path or work / "tritonserver.log", "ab")  # noqa: SIM115 (owned by the process)
    # Its own process group: the python backend stubs are children that must die with it.
    return subprocess.Popen(command, env=environment(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def kill(proc: subprocess.Popen) -> None:
    """Kills tritonserver and its backend stubs at once (a crash, not a drain)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m exporters.triton_local",
        description="Run Triton (python backend) over an infersuite repository")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--models", nargs="*", help="only these models (default: all)")
    args = parser.parse_args(argv)
    try:
        work = Path(tempfile.mkdtemp(prefix="infersuite-triton-"))
        proc = launch(args.repository, args.grpc_port, work, args.models, log_path=Path("/dev/stdout"))
    except TritonUnavailable as exc:
        raise SystemExit(str(exc)) from None
    raise SystemExit(proc.wait())


if __name__ == "__main__":
    main()
