"""podman mechanics for the container test: build the images from docker/, run one container per
service, talk to it from the host, stop it. No test logic here."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
IMAGE = "localhost/infersuite:cpu"
# The services of the suite and their gRPC service names (grpc.health.v1 entries).
GRPC_SERVICES = {
    "ctr": "infersuite.ctr.v1.CtrService",
    "segmentation": "infersuite.segmentation.v1.SegmentationService",
    "splitcompute": "infersuite.splitcompute.v1.SplitComputeService",
    "audio": "infersuite.audio.v1.AudioService",
}


def missing_tools() -> list[str]:
    return [tool for tool in ("podman", "runc") if shutil.which(tool) is None]


def podman_env() -> dict[str, str]:
    """containers.conf: runc, cgroupfs, explicit ulimits (what this kind of host needs)."""
    return {**os.environ, "CONTAINERS_CONF": str(DOCKER / "containers.conf")}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])}... failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def build_images(timings: dict[str, float]) -> None:
    """The base image (cached by recipe hash), then the repository's Dockerfile, unmodified."""
    start = time.perf_counter()
    base = subprocess.run([str(DOCKER / "build_base_image.sh")], env=podman_env(), capture_output=True,
                          text=True, timeout=900)
    if base.returncode != 0:
        raise RuntimeError(f"build_base_image.sh failed: {base.stdout[-1000:]}{base.stderr[-2000:]}")
    timings["base image"] = time.perf_counter() - start
    start = time.perf_counter()
    podman("build", "-q", "-f", "docker/Dockerfile", "--ignorefile", "docker/Dockerfile.dockerignore",
           "--format", "docker", "--target", "runtime", "-t", IMAGE, str(REPO), timeout=900)
    timings["service image"] = time.perf_counter() - start


def readable_repository(sources: list[Path], target: Path) -> Path:
    """One model repository from several (aliases merged), readable by the image's non-root user."""
    target.mkdir(parents=True, exist_ok=True)
    aliases: dict[str, str] = {}
    for source in sources:
        for entry in source.iterdir():
            if entry.name == "aliases.json":
                aliases.update(json.loads(entry.read_text()))
            elif entry.is_dir():
                shutil.copytree(entry, target / entry.name, dirs_exist_ok=True)
    if aliases:
        (target / "aliases.json").write_text(json.dumps(aliases, indent=2))
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


@dataclass
class Container:
    name: str
    service: str
    grpc_port: int
    metrics_port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as reply:
            return reply.read().decode()

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr


def run_container(service: str, repository: Path, tag: str) -> Container:
    """The service as compose and Kubernetes run it: read-only root, /tmp on tmpfs, models read-only."""
    name = f"infersuite-test-{service}-{tag}"
    podman("rm", "-f", name, check=False)
    podman("run", "-d", "--name", name, "--read-only", "--tmpfs", "/tmp",
           "-e", f"INFERSUITE_SERVICES={json.dumps([service])}",
           "-e", f"INFERSUITE_HEALTH_SERVICE={GRPC_SERVICES[service]}",
           "-e", "INFERSUITE_INTRA_OP_THREADS=1",
           "-v", f"{repository}:/models:ro", "-p", "127.0.0.1::50051", "-p", "127.0.0.1::9464", IMAGE)
    return Container(name, service, _host_port(name, 50051), _host_port(name, 9464))


def _host_port(name: str, port: int) -> int:
    return int(podman("port", name, f"{port}/tcp").stdout.strip().rsplit(":", 1)[1])


async def health(target: str, service: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=3)
    return int(reply.status)


async def wait_serving(container: Container, timeout_s: float) -> float:
    """Seconds until grpc.health.v1 says SERVING for the server and the service."""
    start = time.perf_counter()
    while True:
        try:
            statuses = [await health(container.target, name) for name in ("", GRPC_SERVICES[container.service])]
            if all(status == health_pb2.HealthCheckResponse.SERVING for status in statuses):
                return time.perf_counter() - start
        except grpc.aio.AioRpcError:
            pass
        running = podman("inspect", container.name, "--format", "{{.State.Running}}").stdout.strip()
        if running != "true" or time.perf_counter() - start > timeout_s:
            raise AssertionError(f"{container.service} not SERVING (running={running}):\n{container.logs()[-3000:]}")
        await asyncio.sleep(1.0)


def stop(container: Container, grace_s: int = 20) -> tuple[int, str]:
    """SIGTERM, then the exit code and the logs."""
    podman("stop", "-t", str(grace_s), container.name, timeout=grace_s + 30)
    code = int(podman("inspect", container.name, "--format", "{{.State.ExitCode}}").stdout.strip())
    return code, container.logs()


def remove(container: Container) -> None:
    podman("rm", "-f", container.name, check=False)
