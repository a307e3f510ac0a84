"""The deployment for real: podman builds the base image and the repository's unmodified
docker/Dockerfile, runs one container per service that has a model (the tiny session models of
the test suite, merged into one repository), and the host checks grpc.health.v1, a real request
through each service (the load-test generators' requests and response checks), /metrics, a real
Prometheus scraping the containers with the shipped rules (p99 from the histograms), the
dashboard's metric names against what the containers export, and the SIGTERM drain.

Skipped only when podman or runc is not installed. `pytest -m deploy -s` prints phase timings.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import os
import re
import subprocess
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.deploy import podman_stack as stack
from tests.deploy.dashboard_queries import dashboard_metric_names
from tests.deploy.prometheus_server import PrometheusServer, free_port

MISSING = stack.missing_tools()
pytestmark = [
    pytest.mark.deploy,
    # Cold: base image (debootstrap) + service image (pip) + tiny models, on a busy 2-core machine.
    pytest.mark.timeout(1500),
    pytest.mark.skipif(bool(MISSING), reason=f"not installed: {', '.join(MISSING)} (apt-get install podman runc)"),
]
if MISSING:
    print(f"tests/deploy/test_containers.py skipped: {', '.join(MISSING)} not installed")

# Families whose tiny session fixture is registered (ctr's lives in tests/conftest.py, the others are the
# plugins it names): requested by name in `deployed`, never bound into this module (a module-level copy of
# a fixture trains its model again; tests/unit/test_fixture_hygiene.py keeps such rebinding out).
FIXTURES = ["ctr", *(family for family in ("splitcompute", "audio", "segmentation")
                     if hasattr(importlib.import_module(f"tests.fixtures_{family}"), f"tiny_{family}"))]
REQUESTS = 4


def _generator_params(service: str, fixture: object, repository: Path, workdir: Path) -> dict[str, str]:
    if service == "ctr":
        return {"repository": str(repository)}
    if service == "splitcompute":
        from infersuite.services.splitcompute.edge import EdgeEncoder  # the edge SDK writes the frames, as on a device

        encoder, frames = EdgeEncoder(fixture.encoder_bundle), workdir / "frames"  # type: ignore[attr-defined]
        frames.mkdir(exist_ok=True)
        for index in range(REQUESTS):
            (frames / f"frame{index}.bin").write_bytes(encoder.encode(fixture.images[index]).payload)  # type: ignore[attr-defined]
        return {"payloads": str(frames)}
    if service == "audio":
        return {"min_s": "0.3", "max_s": "1.0"}
    return {"min_side": "48", "max_side": "96"}


async def _send(target: str, service: str, params: dict[str, str], count: int) -> int:
    """`count` requests from the service's load-test generator; each response must pass its check."""
    from infersuite.loadtest.generators import create

    async with grpc.aio.insecure_channel(target) as channel:
        pool = await create(service, params).build(channel, np.random.default_rng(count), count)
        call = channel.unary_unary(pool.method)  # serialized request bytes in, response bytes out
        for payload, expectation in zip(pool.payloads, pool.expectations, strict=True):
            failure = pool.check(expectation, await call(payload, timeout=60))
            assert failure is None, f"{service}: {failure}"
    return count


@pytest.fixture(scope="module")
async def deployed(request, tmp_path_factory):
    timings: dict[str, float] = {}
    with concurrent.futures.ThreadPoolExecutor(1) as builder:
        images = builder.submit(stack.build_images, timings)  # mostly downloads: overlaps the training
        start = time.perf_counter()
        fixtures = {family: request.getfixturevalue(f"tiny_{family}") for family in FIXTURES}
        timings["tiny models"] = time.perf_counter() - start
        images.result()
    workdir = tmp_path_factory.mktemp("deploy")
    repository = stack.readable_repository([f.repository for f in fixtures.values()], workdir / "repository")
    start, tag = time.perf_counter(), str(os.getpid())
    containers = {service: stack.run_container(service, repository, tag) for service in fixtures}
    try:
        await asyncio.gather(*(stack.wait_serving(c, timeout_s=180) for c in containers.values()))
        logs_at_serving = {service: c.logs() for service, c in containers.items()}  # read once SERVING was seen
        timings["containers serving"] = time.perf_counter() - start
        params = {s: _generator_params(s, fixtures[s], repository, workdir) for s in containers}
        yield {"containers": containers, "params": params, "workdir": workdir, "timings": timings,
               "repository": repository,
               "logs_at_serving": logs_at_serving}
    finally:
        for container in containers.values():
            stack.remove(container)
        print(f"deploy: services {', '.join(containers)}; timings (s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))


def test_every_service_with_a_model_runs_in_a_container(deployed) -> None:
    assert "ctr" in deployed["containers"]
    assert set(deployed["containers"]) == set(FIXTURES)
    for service, logs in deployed["logs_at_serving"].items():
        # An order, not a duration (wait_serving's 180 s is only how long a cold start may take): by the time
        # health said SERVING, the container had logged its models loaded and warmed up.
        assert re.search(r"model \S+ v\S+ ready", logs), (service, logs[-3000:])


def test_the_image_health_check_reports_serving(deployed) -> None:
    """The Dockerfile's HEALTHCHECK (docker/healthcheck.py inside the image) on the service's entry."""
    for container in deployed["containers"].values():
        result = stack.podman("healthcheck", "run", container.name, check=False)
        assert result.returncode == 0, (container.service, result.stdout, result.stderr)


def test_the_image_runs_as_a_non_root_user_without_torch(deployed) -> None:
    container = deployed["containers"]["ctr"]
    uid = stack.podman("exec", container.name, "id", "-u").stdout.strip()
    probe = stack.podman("exec", container.name, "python", "-c",
                         "import importlib.util as u; print(u.find_spec('torch') is None)").stdout.strip()
    assert uid == "10001" and probe == "True"


async def test_a_real_request_through_each_service_and_its_metrics(deployed) -> None:
    for service, container in deployed["containers"].items():
        await _send(container.target, service, deployed["params"][service], REQUESTS)
        text = container.metrics()
        grpc_service = stack.GRPC_SERVICES[service]
        ok = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                 if line.startswith("infersuite_requests_total{") and f'service="{grpc_service}"' in line
                 and 'code="OK"' in line)
        assert ok >= REQUESTS, (service, ok)
        assert re.search(r'^infersuite_model_ready\{model="[^"]+"\} 1\.0$', text, re.MULTILINE), service
        promtool = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert promtool.returncode == 0, (service, promtool.stdout, promtool.stderr)


def test_dashboard_metrics_are_exported_by_the_containers(deployed) -> None:
    exported: set[str] = set()
    for container in deployed["containers"].values():
        exported |= set(re.findall(r"^# TYPE (\S+) ", container.metrics(), re.MULTILINE))
    exported |= {name.removesuffix("_total") for name in exported}
    families = {f"infersuite_{s}_" for s in stack.GRPC_SERVICES}
    running = {f"infersuite_{s}_" for s in deployed["containers"]}
    wanted = {name for name in dashboard_metric_names()
              if not name.startswith(tuple(families)) or name.startswith(tuple(running))}
    assert wanted and wanted <= exported, sorted(wanted - exported)


async def test_prometheus_scrapes_the_containers_and_computes_p99(deployed) -> None:
    containers = deployed["containers"]
    rules = sorted((stack.DOCKER / "prometheus" / "rules").glob("*.yml"))
    prometheus = PrometheusServer(deployed["workdir"] / "prometheus",
                                  {s: f"127.0.0.1:{c.metrics_port}" for s, c in containers.items()}, rules)
    try:
        prometheus.wait_targets_up(len(containers))
        for _ in range(3):  # traffic across several 1 s scrapes, so rate() has an increase to see
            for service, container in containers.items():
                await _send(container.target, service, deployed["params"][service], 2)
            await asyncio.sleep(1.2)
        p99 = prometheus.wait_value("service_method:infersuite_request_duration_seconds:p99_1m", len(containers))
        direct = prometheus.wait_value(
            'histogram_quantile(0.99, sum by (service, le) (rate(infersuite_request_duration_seconds_bucket'
            '{service=~"infersuite\\\\..*"}[1m])))', len(containers))
        errors = prometheus.wait_value("service_method:infersuite_request_errors:ratio_rate1m", len(containers))
    finally:
        prometheus.close()
    assert {s["metric"]["service"] for s in direct} == {stack.GRPC_SERVICES[s] for s in containers}
    for series in [*p99, *direct]:
        # Not a latency target: 10 s is the top finite bucket (LATENCY_BUCKETS), so this says the rule computed a
        # real quantile from the histograms (not NaN, not +Inf, not an empty 0).
        assert 0 < float(series["value"][1]) <= 10.0, series
    assert all(float(s["value"][1]) == 0.0 for s in errors), errors


async def test_compose_file_runs_under_podman_compose(deployed) -> None:
    """docker/compose.yaml, unmodified, brings ctr (+ one more service) up under podman-compose:
    published ports, health checks, init, read-only root, and service-name DNS between them.
    Prometheus and Grafana are not started: their images cannot be pulled on these machines."""
    tool = stack.REPO / ".deploy-venv" / "bin" / "podman-compose"
    assert tool.exists(), "podman-compose is not installed in .deploy-venv (make deploy-tools)"
    services = ["ctr", *[s for s in deployed["containers"] if s != "ctr"][:1]]
    ports = {s: free_port() for s in services}
    env = {**stack.podman_env(), "INFERSUITE_MODEL_REPOSITORY_DIR": str(deployed["repository"]),
           **{f"{s.upper()}_PORT": str(port) for s, port in ports.items()}}
    compose = [str(tool), "-p", f"infersuite-test-{os.getpid()}", "-f", "docker/compose.yaml"]
    start = time.perf_counter()
    up = subprocess.run([*compose, "up", "-d", *services], cwd=stack.REPO, env=env, capture_output=True, text=True,
                        timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        names = {s: f"infersuite-test-{os.getpid()}_{s}_1" for s in services}
        for service in services:
            await stack.wait_serving(stack.Container(names[service], service, ports[service], 0), timeout_s=180)
        deployed["timings"]["compose up"] = time.perf_counter() - start
        probe = ("import grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; "
                 "print(g.HealthStub(grpc.insecure_channel('ctr:50051')).Check(h.HealthCheckRequest("
                 "service='infersuite.ctr.v1.CtrService'), timeout=10).status)")
        by_name = stack.podman("exec", names[services[-1]], "python", "-c", probe)
        assert by_name.stdout.strip() == "1", by_name.stderr  # SERVING, reached as "ctr" from a sibling
        for name in names.values():
            assert stack.podman("healthcheck", "run", name, check=False).returncode == 0, name
            config = stack.podman("inspect", name, "--format", "{{.HostConfig.Init}} {{.HostConfig.ReadonlyRootfs}}")
            assert config.stdout.split() == ["true", "true"], name
        stopped = subprocess.run([*compose, "stop", *services], cwd=stack.REPO, env=env, capture_output=True,
                                 text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stderr[-2000:]
        for name in names.values():
            assert stack.podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip() == "0", name
    finally:
        subprocess.run([*compose, "down", "-t", "5"], cwd=stack.REPO, env=env, capture_output=True, timeout=120)


def test_sigterm_drains_and_exits_zero(deployed) -> None:
    for container in deployed["containers"].values():
        code, logs = stack.stop(container)
        assert code == 0, logs[-2000:]
        assert "signal received: draining" in logs and "stopped" in logs, logs[-2000:]
