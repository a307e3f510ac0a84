"""The new-family checklist (docs/families.md), proven: a fifth family written here, as its own file per
layer in a temporary directory put on each layer's package path, is found by the services, the
exporters' build, the quantization report, the load-test generators, the deploy files and the
dashboard, with no edit to any shared list. A family that lacks a layer's part is refused by name."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

import exporters
import infersuite.loadtest.generators
import infersuite.services as services
from exporters import build as exporters_build
from exporters import families as exporter_parts
from exporters.ship import training_seeds
from infersuite.loadtest.generators import base as generator_base
from infersuite.services.families import MissingFamilyPart, family_names
from infersuite.services.runtime.service import discover_services, load_services

REPO = Path(__file__).resolve().parents[2]
GRPC_SERVICE = "infersuite.quintet.v1.QuintetService"

SERVICE_PACKAGE = f'''
class QuintetService:
    name = "quintet"
    grpc_service_names = ("{GRPC_SERVICE}",)

    def required_models(self):
        return ["quintet-fp32"]

    def register(self, server, runtime):
        pass


SERVICE = QuintetService()
'''
EXPORTER = '''
from dataclasses import dataclass


@dataclass
class QuintetConfig:
    seed: int = 5


def build(artifacts, repository, quick):
    model = repository / "quintet-fp32" / "1"
    model.mkdir(parents=True)
    (model / "model.onnx").write_bytes(b"")
    return model.parent


def seed_configs():
    return [QuintetConfig()]
'''
GENERATOR = f'''
from infersuite.loadtest.generators.base import register


class QuintetGenerator:
    grpc_service = "{GRPC_SERVICE}"

    def __init__(self, params):
        self.params = params


register("quintet", "Quintet requests")(QuintetGenerator)
'''
DEPLOY = '''
host_port = 50055

[k8s]
intra_op_threads = 1
cpu = "1"
memory = "256Mi"
memory_limit = "512Mi"

[[panels]]
title = "quintet: requests per second"
unit = "reqps"
targets = [{expr = "sum (rate(infersuite_requests_total[$__rate_interval]))", legend = "all"}]
'''


def _load_generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", REPO / "docker" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = sys.modules["generate"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def generate() -> ModuleType:
    return _load_generate()


@pytest.fixture(autouse=True)
def forget_test_families() -> Iterator[None]:
    """The families these tests write are imported; they leave sys.modules with their directories."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.rsplit(".", 1)[-1] in ("quintet", "sextet", "septet"):
            del sys.modules[name]


def _add_family(root: Path, monkeypatch: pytest.MonkeyPatch, name: str, layers: dict[str, str],
                generate: ModuleType) -> None:
    """Writes `name`'s part of each given layer under `root` and puts it on that layer's path."""
    paths = {"service": (services, root / "services" / name / "__init__.py"),
             "exporter": (exporters, root / "exporters" / f"{name}.py"),
             "generator": (infersuite.loadtest.generators, root / "generators" / f"{name}.py")}
    for layer, (package, path) in paths.items():
        if layer in layers:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(layers[layer])
            top = path.parents[1] if layer == "service" else path.parent
            monkeypatch.setattr(package, "__path__", [*package.__path__, str(top)])
    if "deploy" in layers:
        (root / "deploy").mkdir(exist_ok=True)
        (root / "deploy" / f"{name}.toml").write_text(layers["deploy"])
        monkeypatch.setattr(generate, "FRAGMENTS", [*generate.FRAGMENTS, root / "deploy"])


@pytest.fixture
def quintet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, generate: ModuleType) -> ModuleType:
    monkeypatch.setattr(generator_base, "_REGISTRY", dict(generator_base._REGISTRY))  # registrations undone
    _add_family(tmp_path, monkeypatch, "quintet", {"service": SERVICE_PACKAGE, "exporter": EXPORTER,
                                                    "generator": GENERATOR, "deploy": DEPLOY}, generate)
    return generate


def test_the_four_families_have_every_layer_part(generate: ModuleType) -> None:
    assert family_names() == discover_services() == ["audio", "ctr", "segmentation", "splitcompute"]
    assert set(exporter_parts.builders()) == set(family_names())
    assert infersuite.loadtest.generators.missing_families() == {}
    assert [f.name for f in generate.families()] == ["ctr", "segmentation", "splitcompute", "audio"]  # by port


def test_a_fifth_family_is_found_by_every_layer_with_no_shared_list_edited(quintet: ModuleType,
                                                                          tmp_path: Path) -> None:
    # services: discovered, and "*" (the default INFERSUITE_SERVICES) hosts it
    assert "quintet" in discover_services() and "quintet" in family_names()
    assert [s.grpc_service_names for s in load_services(["*"]) if s.name == "quintet"] == [(GRPC_SERVICE,)]

    # exporters: `python -m exporters.build` builds it by default; ship records its seed; the quantization
    # report names it as not measured instead of leaving it out
    exporters_build.main(["--out", str(tmp_path / "repo"), "--artifacts", str(tmp_path / "art"),
                          "--families", "quintet"])
    assert (tmp_path / "repo" / "quintet-fp32" / "1" / "model.onnx").is_file()
    assert "quintet" in exporter_parts.builders()
    assert training_seeds()["exporters.QuintetConfig"] == 5
    _, not_measured = exporter_parts.quant_families(tmp_path / "repo", tmp_path / "art")
    assert "defines no quant_families()" in not_measured["quintet"]

    # loadtest: its generator is registered and mapped to its gRPC service (suite discovery by reflection)
    assert "quintet" in infersuite.loadtest.generators.available()
    assert infersuite.loadtest.generators.missing_families() == {}
    assert generator_base.by_grpc_service()[GRPC_SERVICE] == "quintet"

    # deploy files and dashboard, as docker/generate.py writes them
    files = {path.relative_to(REPO / "docker").as_posix(): text for path, text in quintet.render().items()}
    compose = yaml.safe_load(files["compose.yaml"])["services"]["quintet"]
    assert compose["environment"]["INFERSUITE_SERVICES"] == '["quintet"]'
    assert compose["environment"]["INFERSUITE_HEALTH_SERVICE"] == GRPC_SERVICE
    assert compose["ports"] == ["127.0.0.1:${QUINTET_PORT:-50055}:50051"] and compose["depends_on"] == ["ctr"]
    manifests = {doc["kind"]: doc for doc in yaml.safe_load_all(files["k8s/quintet.yaml"])}
    container = manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["grpc"]["service"] == GRPC_SERVICE
    assert container["resources"]["requests"] == {"cpu": "1", "memory": "256Mi"}
    assert set(manifests) == {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    assert "quintet.yaml" in yaml.safe_load(files["k8s/kustomization.yaml"])["resources"]
    scrape = yaml.safe_load(files["prometheus/prometheus.yml"])["scrape_configs"][0]["static_configs"]
    assert {"targets": ["quintet:9464"], "labels": {"infersuite_service": "quintet"}} in scrape
    titles = [p["title"] for p in json.loads(files["grafana/dashboards/infersuite.json"])["panels"]]
    assert titles[-1] == "quintet: requests per second"  # last: its host port is the highest


def test_a_family_missing_a_layer_part_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          generate: ModuleType) -> None:
    _add_family(tmp_path, monkeypatch, "sextet", {"service": SERVICE_PACKAGE.replace("quintet", "sextet")},
                generate)
    assert "sextet" in discover_services()
    with pytest.raises(MissingFamilyPart, match=r"exporters/sextet\.py"):
        exporter_parts.builders()
    with pytest.raises(SystemExit, match=r"exporters/sextet\.py"):
        exporters_build.main(["--out", str(tmp_path / "repo")])
    assert "infersuite/loadtest/generators/sextet.py" in infersuite.loadtest.generators.missing_families()["sextet"]
    with pytest.raises(SystemExit, match=r"docker/families/sextet\.toml"):
        generate.families()


def test_an_exporter_without_its_functions_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      generate: ModuleType) -> None:
    _add_family(tmp_path, monkeypatch, "septet", {"service": SERVICE_PACKAGE.replace("quintet", "septet"),
                                                   "exporter": "def build(artifacts, repository, quick): ...\n"},
                generate)
    with pytest.raises(MissingFamilyPart, match=r"exporters/septet\.py defines no seed_configs\(\)"):
        exporter_parts.builders()


def test_the_load_test_suite_names_a_served_family_it_has_no_generator_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from infersuite.loadtest import suite

    served = ["grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "infersuite.ctr.v1.CtrService",
              GRPC_SERVICE]
    monkeypatch.setattr(suite, "list_services", lambda target: served)
    monkeypatch.setattr(suite, "health_of", lambda target, service="": 1)  # SERVING
    monkeypatch.setattr(suite, "_has_ctr_meta", lambda repository, params: False)
    runs, skipped = suite.plan(None, Path("/nonexistent"))  # type: ignore[arg-type]
    assert [name for name, _, _ in runs] == ["health", "ctr"]
    assert list(skipped) == [GRPC_SERVICE] and "infersuite/loadtest/generators/<family>.py" in skipped[GRPC_SERVICE]
