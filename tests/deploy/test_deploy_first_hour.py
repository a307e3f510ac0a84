"""Deployment details a new operator meets: an ignore file per Dockerfile that sends only what the
image COPYs, resource limits on every compose service, a NetworkPolicy, a ServiceMonitor wired to
the Services' metrics ports, and a Job that fills the model volume (validated against the API schemas)."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
import yaml

from infersuite.services.families import family_names

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
K8S = DOCKER / "k8s"
SUITE = tuple(family_names())  # every family found (infersuite/services/families.py)
DOCKERFILES = sorted(p for p in DOCKER.glob("Dockerfile*") if not p.name.endswith(".dockerignore"))


def _allowed(ignore: Path, path: str) -> bool:
    """Whether `path` survives an allowlist ignore file ('*' then '!pattern' lines)."""
    allowed = False
    for line in ignore.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/") or pattern == "*":
            allowed = negate
    return allowed


def _copied_sources(dockerfile: Path) -> list[str]:
    text = dockerfile.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.MULTILINE))
    sources = []
    for line in re.findall(r"^COPY (?!--from)(.*)$", text, re.MULTILINE):
        parts = [p for p in line.split() if not p.startswith("--")][:-1]
        sources += [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], p).rstrip("/") for p in parts]
    return sources


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_dockerfile_has_an_ignore_file_that_sends_only_what_it_copies(dockerfile: Path) -> None:
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    assert ignore.is_file(), f"{ignore.name} is missing: the whole tree would be the build context"
    assert not _allowed(ignore, ".venv/bin/python") and not _allowed(ignore, "artifacts/ctr/din_dice.pt")
    for source in _copied_sources(dockerfile):
        probe = source.replace("*", "x")
        assert _allowed(ignore, probe) or _allowed(ignore, probe + "/x.py"), f"{dockerfile.name}: COPY {source}"
    root = REPO / ".dockerignore"  # the classic builder reads only this one
    assert all(_allowed(root, s.replace("*", "x")) or _allowed(root, s + "/x.py") for s in _copied_sources(dockerfile))


def test_every_compose_service_has_cpu_and_memory_limits() -> None:
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    for name, spec in services.items():
        assert "mem_limit" in spec, name
        if name != "triton":  # the GPU server gets its memory bound; CPU throttling would starve it
            assert float(spec["cpus"]) > 0, name
    assert services["ctr"]["volumes"][0].startswith("${INFERSUITE_MODEL_REPOSITORY_DIR:-../shipped_models}")


def _docs(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def test_network_policy_denies_by_default_and_opens_grpc_and_metrics() -> None:
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in _docs("networkpolicy.yaml")}
    assert policies["default-deny-ingress"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    ports = {p["port"] for rule in policies["infersuite-grpc-and-metrics"]["ingress"] for p in rule["ports"]}
    assert {50051, 9464} <= ports
    assert "networkpolicy.yaml" in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]


def test_service_monitor_selects_every_service_by_its_metrics_port() -> None:
    (monitor,) = _docs("servicemonitor.yaml")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    for svc in SUITE:
        service = next(d for d in _docs(f"{svc}.yaml") if d["kind"] == "Service")
        assert selector.items() <= service["metadata"]["labels"].items(), svc
        assert "metrics" in {p["name"] for p in service["spec"]["ports"]}, svc


def test_model_fill_job_validates_and_writes_the_volume_the_services_read() -> None:
    import kubernetes_validate

    (job,) = _docs("models-fill-job.yaml")
    kubernetes_validate.validate(job, "1.29.0", strict=True)
    (claim,) = _docs("models-pvc.yaml")
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert "ReadWriteOnce" in claim["spec"]["accessModes"] and "ReadOnlyMany" in claim["spec"]["accessModes"]
    assert ":bundled" in pod["containers"][0]["image"]
    assert "models-fill-job.yaml" in (REPO / "docs" / "deployment.md").read_text()
