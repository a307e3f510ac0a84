"""Static checks of docker/: the compose file (docker-compose's strict schema), the Prometheus
config and rules (promtool, with rule unit tests), the Grafana dashboard (generated, every query
parses, every metric it reads is one the services export), the Kubernetes manifests (schemas
of the Kubernetes API, strict, via kubernetes-validate) and how they are wired together."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infersuite.services.families import family_names
from tests.deploy.dashboard_queries import (
    DASHBOARD,
    METRIC_TOKEN,
    base_name,
    dashboard_exprs,
    dashboard_metric_names,
    strip_strings_and_matchers,
)

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
RULES = sorted((DOCKER / "prometheus" / "rules").glob("*.yml"))
SUITE = tuple(family_names())  # every family found (infersuite/services/families.py), never listed
K8S_VERSIONS = ("1.29.0", "1.37.0")  # the oldest cluster the manifests target (grpc probes GA in 1.27) and the newest



def grpc_service_names() -> dict[str, str]:
    """service package -> full gRPC service name, read from infersuite/protos/<svc>.proto."""
    names = {}
    for svc in SUITE:
        text = (REPO / "infersuite" / "protos" / f"{svc}.proto").read_text()
        package = re.search(r"^package\s+([\w.]+);", text, re.MULTILINE).group(1)  # type: ignore[union-attr]
        service = re.search(r"^service\s+(\w+)", text, re.MULTILINE).group(1)  # type: ignore[union-attr]
        names[svc] = f"{package}.{service}"
    return names


def recorded_names() -> set[str]:
    return {rule["record"] for path in RULES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "record" in rule}


def exported_metric_names() -> set[str]:
    """What the services export: the runtime's registry plus every family metric their code creates."""
    from infersuite.services.runtime.metrics import Metrics

    names = {family.name for family in Metrics().registry.collect()}
    for path in (REPO / "infersuite" / "services").rglob("*.py"):
        names |= set(re.findall(r'"(infersuite_[a-z0-9_]+)"', path.read_text()))
    return {base_name(name) for name in names}


def promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    assert shutil.which("promtool"), "promtool is not installed (apt-get install prometheus; `make tools`)"
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


# --- compose ------------------------------------------------------------------------------------

def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_file_passes_docker_compose_strict_validation() -> None:
    tool = REPO / ".deploy-venv" / "bin" / "docker-compose"
    assert tool.exists(), "docker-compose is not installed in .deploy-venv (make deploy-tools)"
    result = subprocess.run([str(tool), "-f", "docker/compose.yaml", "config", "-q"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_compose_runs_each_service_with_its_health_check_and_the_models() -> None:
    services, grpc_names = _compose()["services"], grpc_service_names()
    assert set(SUITE) | {"prometheus", "grafana", "triton"} == set(services)
    host_ports = [port for svc in SUITE for port in services[svc]["ports"]]
    assert len(set(host_ports)) == len(SUITE)
    for svc in SUITE:
        spec = services[svc]
        assert json.loads(spec["environment"]["INFERSUITE_SERVICES"]) == [svc]
        assert spec["environment"]["INFERSUITE_HEALTH_SERVICE"] == grpc_names[svc]
        assert spec["healthcheck"]["test"] == ["CMD", "python", "/app/healthcheck.py"]
        assert spec["init"] is True and spec["read_only"] is True
        assert any(volume.endswith(":/models:ro") for volume in spec["volumes"])
    assert services["triton"]["profiles"] == ["triton"]
    assert services["ctr"]["environment"]["INFERSUITE_TRITON_URL"] == "triton:8001"


def test_compose_bind_mounts_exist_and_prometheus_scrapes_every_service() -> None:
    services = _compose()["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DOCKER / source).exists(), volume
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    job = next(job for job in config["scrape_configs"] if job["job_name"] == "infersuite")
    targets = {t for static in job["static_configs"] for t in static["targets"]}
    assert targets == {f"{svc}:9464" for svc in SUITE}


# --- Prometheus ---------------------------------------------------------------------------------

def test_prometheus_configs_and_rules_pass_promtool(tmp_path) -> None:
    for args in (["check", "config", "docker/prometheus/prometheus.yml"], ["check", "rules", *map(str, RULES)]):
        result = promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr
    # Debian builds Prometheus without Kubernetes discovery, so promtool rejects kubernetes_sd_configs:
    # check everything else of the in-cluster config (relabelling included) with static targets.
    config = yaml.safe_load((DOCKER / "k8s" / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs")[0]["role"] == "pod"
        job["static_configs"] = [{"targets": ["pod:9464"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_recording_and_alert_rules_behave_as_specified() -> None:
    """promtool rule unit tests: error ratio, p99 from buckets, health calls left out, alerts fire."""
    result = promtool("test", "rules", "tests/deploy/prometheus_rules_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana ------------------------------------------------------------------------------------

def test_dashboard_json_is_the_generated_one() -> None:
    result = subprocess.run([sys.executable, "docker/grafana/build_dashboard.py", "--check"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_deploy_files_naming_the_families_are_the_generated_ones() -> None:
    """compose, k8s/<family>.yaml, kustomization, prometheus.yml, the dashboard: from docker/generate.py."""
    result = subprocess.run([sys.executable, "docker/generate.py", "--check"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


def test_dashboard_panels_use_the_provisioned_datasource_and_cover_the_issue() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    graphs = [p for p in panels if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == uid and p["targets"] for p in graphs)
    exprs = " ".join(dashboard_exprs())
    for metric in ("infersuite_requests_total", "infersuite_request_duration_seconds_bucket",
                   "infersuite_model_queue_duration_seconds_bucket", "infersuite_model_compute_duration_seconds_bucket",
                   "infersuite_model_batch_size_sum", "infersuite_model_rejected_requests_total",
                   "infersuite_segmentation_encoder_layers", "infersuite_splitcompute_payload_bytes"):
        assert metric in exprs, metric
    assert "histogram_quantile(0.99" in exprs and "histogram_quantile(0.5" in exprs


def test_every_dashboard_query_parses_as_promql(tmp_path) -> None:
    """Each query becomes a recording rule (Grafana variables substituted), which promtool parses."""
    def concrete(expr: str) -> str:
        return expr.replace("$__rate_interval", "1m").replace("$service", ".*").replace("$model", ".*")

    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query:{i}", "expr": concrete(expr)} for i, expr in enumerate(dashboard_exprs())]}]}
    (tmp_path / "dashboard_rules.yml").write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(tmp_path / "dashboard_rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_reads_only_metrics_the_services_export_or_rules_record() -> None:
    wanted, exported = dashboard_metric_names(), exported_metric_names()
    assert len(wanted) >= 12 and wanted <= exported, sorted(wanted - exported)
    used_records = {t for expr in dashboard_exprs() for t in METRIC_TOKEN.findall(strip_strings_and_matchers(expr))
                    if ":" in t}
    assert used_records <= recorded_names(), sorted(used_records - recorded_names())


# --- Kubernetes ---------------------------------------------------------------------------------

def _manifests() -> dict[str, list[dict]]:
    kustomization = yaml.safe_load((DOCKER / "k8s" / "kustomization.yaml").read_text())
    files = [*kustomization["resources"], "triton.yaml", "prometheus-adapter.yaml"]
    return {name: [doc for doc in yaml.safe_load_all((DOCKER / "k8s" / name).read_text()) if doc] for name in files}


def test_kubernetes_manifests_validate_against_the_api_schemas() -> None:
    import kubernetes_validate

    manifests = _manifests()
    assert sum(len(docs) for docs in manifests.values()) >= 2 + 4 * len(SUITE) + 3
    for version in K8S_VERSIONS:
        for name, docs in manifests.items():
            for doc in docs:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as err:
                    pytest.fail(f"{name} {doc['kind']}/{doc['metadata']['name']} (k8s {version}): {err.message}")


def test_kubernetes_services_are_wired_to_their_pods_probes_and_autoscaler() -> None:
    manifests, grpc_names = _manifests(), grpc_service_names()
    adapter = yaml.safe_load(manifests["prometheus-adapter.yaml"][0]["data"]["config.yaml"])
    adapter_metrics = {rule["name"]["as"] for rule in adapter["rules"]}
    for svc in SUITE:
        kinds = {doc["kind"]: doc for doc in manifests[f"{svc}.yaml"]}
        pod = kinds["Deployment"]["spec"]["template"]
        labels, container = pod["metadata"]["labels"], pod["spec"]["containers"][0]
        env = {item["name"]: item["value"] for item in container["env"]}
        assert json.loads(env["INFERSUITE_SERVICES"]) == [svc]
        assert container["readinessProbe"]["grpc"] == {"port": 50051, "service": grpc_names[svc]}
        assert container["livenessProbe"]["grpc"]["port"] == 50051 and "startupProbe" in container
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        for kind in ("Service", "PodDisruptionBudget"):
            selector = kinds[kind]["spec"]["selector"]
            assert (selector.get("matchLabels") or selector).items() <= labels.items(), kind
        assert kinds["Service"]["spec"]["clusterIP"] == "None"  # client-side gRPC balancing over pod IPs
        hpa = kinds["HorizontalPodAutoscaler"]["spec"]
        assert hpa["scaleTargetRef"]["name"] == kinds["Deployment"]["metadata"]["name"]
        pod_metrics = {m["pods"]["metric"]["name"] for m in hpa["metrics"] if m["type"] == "Pods"}
        assert pod_metrics and pod_metrics <= adapter_metrics


def test_adapter_rules_read_metrics_the_services_export() -> None:
    adapter = yaml.safe_load(_manifests()["prometheus-adapter.yaml"][0]["data"]["config.yaml"])
    series = {base_name(re.match(r"\w+", rule["seriesQuery"]).group(0)) for rule in adapter["rules"]}  # type: ignore[union-attr]
    assert series <= exported_metric_names()


# --- images -------------------------------------------------------------------------------------

def test_images_serve_without_torch_as_a_non_root_user() -> None:
    serve = (REPO / "requirements" / "serve.txt").read_text()
    assert not re.search(r"^torch", serve, re.MULTILINE)
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = (DOCKER / name).read_text()
        runtime = text.split(" AS runtime", 1)[1]
        assert re.search(r"^USER 10001", runtime, re.MULTILINE), name
        assert "HEALTHCHECK" in runtime and 'ENTRYPOINT ["python", "-m", "infersuite.services"]' in runtime, name
        assert "requirements/serve.txt" in text, name
