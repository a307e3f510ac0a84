"""The service lifecycle and set reloads against fake models (no sockets, no onnxruntime): a
service's models swap together, requests finish on the set they started with, the derived state
changes with the set, and a set the service refuses never serves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infersuite.services.runtime import Runtime, RuntimeSettings
from infersuite.services.runtime.lifecycle import ServiceModels
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.model_manager import ModelManager, ModelSet
from infersuite.services.runtime.reload import ModelReloader
from infersuite.services.runtime.repository import ModelRepository, RepositoryModel
from tests.fixtures import FakeModel

STAGES = ["stage-a", "stage-b"]
CONFIG = 'name: "{name}"\nmax_batch_size: 8\n'


def _write_version(root: Path, name: str, version: int, meta: dict[str, Any]) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "config.pbtxt").write_text(CONFIG.format(name=name))
    (root / name / str(version)).mkdir(exist_ok=True)
    (root / name / str(version) / "meta.json").write_text(json.dumps(meta))


class FakeBackend:
    """Loads a FakeModel per version: output y = x + the version's meta "offset", after a delay."""

    def __init__(self) -> None:
        self.loaded: list[FakeModel] = []
        self.closed: list[tuple[str, str]] = []

    async def load(self, entry: RepositoryModel) -> FakeModel:
        offset = float(entry.meta["offset"])

        def outputs(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"y": inputs["x"] + offset}

        model = FakeModel(entry.name, outputs, entry.meta, delay_s=0.01)
        model.version = entry.version
        backend = self

        async def close() -> None:
            backend.closed.append((model.name, model.version))

        model.close = close  # type: ignore[method-assign]
        self.loaded.append(model)
        return model


def _derive(models: ModelSet) -> float:
    """The 'derived state': the sum of the stages' offsets; a set marked broken is refused."""
    metas = [models.get(name).meta for name in STAGES]
    if any(meta.get("broken") for meta in metas):
        raise ValueError("the tables of this set are broken")
    return sum(float(meta["offset"]) for meta in metas)


@dataclass
class Setup:
    root: Path
    manager: ModelManager
    lifecycle: ServiceModels[float]
    reloader: ModelReloader
    backend: FakeBackend


@pytest.fixture
async def served(tmp_path):
    for name in STAGES:
        _write_version(tmp_path, name, 1, {"offset": 1.0})
    backend, metrics = FakeBackend(), Metrics()
    manager = ModelManager(ModelRepository(tmp_path), backend, metrics,  # type: ignore[arg-type]
                           RuntimeSettings(warmup_runs=0))
    runtime = Runtime(RuntimeSettings(), manager, metrics)
    lifecycle = runtime.service_models("pipeline", _derive)
    await manager.load(STAGES)
    runtime.initialize("pipeline", STAGES)
    reloader = ModelReloader(manager, runtime.lifecycles, {"pipeline": lambda: list(STAGES)}, drain_s=5.0)
    yield Setup(tmp_path, manager, lifecycle, reloader, backend)
    await manager.close()


async def _request(lifecycle, x: float) -> tuple[float, float, dict[str, str]]:
    """Both stages in turn on one snapshot: returns (answer, derived state, versions used)."""
    with lifecycle.use() as snapshot:
        value = np.array([[x]], np.float32)
        for name in STAGES:
            value = (await snapshot.models.infer(name, {"x": value}))["y"]
            await asyncio.sleep(0.002)  # a request is often between stages when a swap lands
        return float(value[0, 0]), snapshot.state, snapshot.models.versions()


async def test_a_set_swaps_whole_under_load_and_no_request_mixes_versions(served) -> None:
    for name in STAGES:
        _write_version(served.root, name, 2, {"offset": 10.0})
    requests = [asyncio.create_task(_request(served.lifecycle, float(i))) for i in range(40)]
    await asyncio.sleep(0.015)  # some requests are between stage a and stage b now
    outcomes = await served.reloader.poll_once()
    requests += [asyncio.create_task(_request(served.lifecycle, float(i))) for i in range(40, 60)]
    results = await asyncio.gather(*requests)

    assert sorted((o.model, o.version, o.state, o.meta_changed) for o in outcomes) == [
        ("stage-a", "2", "swapped", ("offset",)), ("stage-b", "2", "swapped", ("offset",))]
    by_version = {}
    for i, (answer, state, versions) in enumerate(results):
        assert len(set(versions.values())) == 1, versions  # never stage a of one version, b of another
        version = versions["stage-a"]
        want = {"1": 2.0, "2": 20.0}[version]
        assert state == want and answer == i + want, (i, answer, state, versions)
        by_version.setdefault(version, []).append(i)
    assert by_version["1"] and set(range(40, 60)) <= set(by_version["2"])  # requests after the swap: all v2
    assert served.manager.get("stage-a").version == served.manager.get("stage-b").version == "2"
    assert sorted(served.backend.closed) == [("stage-a", "1"), ("stage-b", "1")]  # retired once its requests finished


async def test_the_old_set_is_closed_only_after_its_last_request(served) -> None:
    for name in STAGES:
        _write_version(served.root, name, 2, {"offset": 10.0})
    with served.lifecycle.use() as held:  # a long request (a stream) holds the v1 set
        reload = asyncio.create_task(served.reloader.poll_once())
        await asyncio.sleep(0.2)
        assert served.lifecycle.current.models.versions() == {"stage-a": "2", "stage-b": "2"}  # new requests: v2
        assert served.backend.closed == [] and not reload.done()  # v1 waits for the held request
        value = (await held.models.infer("stage-a", {"x": np.zeros((1, 1), np.float32)}))["y"]
        assert float(value[0, 0]) == 1.0  # still version 1's answer
    await reload
    assert sorted(served.backend.closed) == [("stage-a", "1"), ("stage-b", "1")]


async def test_a_set_the_service_refuses_never_serves_and_is_reported_for_each_model(served) -> None:
    for name in STAGES:
        _write_version(served.root, name, 2, {"offset": 10.0, "broken": True})
    outcomes = await served.reloader.poll_once()
    assert [(o.model, o.state) for o in outcomes] == [("stage-a", "failed"), ("stage-b", "failed")]
    assert all("refused the new model set: the tables of this set are broken" in o.reason for o in outcomes)
    assert (await _request(served.lifecycle, 0.0))[:2] == (2.0, 2.0)
    assert served.manager.get("stage-a").version == "1" and set(served.manager.load_failures) == set(STAGES)
    assert sorted(served.backend.closed) == [("stage-a", "2"), ("stage-b", "2")]  # the refused versions were closed
    assert await served.reloader.poll_once() == []  # the same refused files are not retried every poll


async def test_one_model_that_fails_to_load_holds_back_the_whole_set(served) -> None:
    _write_version(served.root, "stage-a", 2, {"offset": 10.0})
    _write_version(served.root, "stage-b", 2, {})  # no offset: its load fails
    outcomes = await served.reloader.poll_once()
    assert [(o.model, o.state) for o in outcomes] == [("stage-a", "failed"), ("stage-b", "failed")]
    assert outcomes[0].reason == "not swapped: stage-b v2 of the same model set failed"
    assert "KeyError" in outcomes[1].reason and set(served.manager.load_failures) == {"stage-b"}
    assert served.manager.get("stage-a").version == "1" and (await _request(served.lifecycle, 0.0))[0] == 2.0


async def test_a_changed_meta_value_alone_rederives_the_state(served) -> None:
    _write_version(served.root, "stage-b", 2, {"offset": 5.0})  # same keys, another value
    outcomes = await served.reloader.poll_once()
    assert [(o.model, o.version, o.state, o.meta_changed) for o in outcomes] == [
        ("stage-b", "2", "swapped", ("offset",))]
    answer, state, versions = await _request(served.lifecycle, 0.0)
    assert (answer, state, versions) == (6.0, 6.0, {"stage-a": "1", "stage-b": "2"})


async def test_polling_with_model_control_none_loads_new_models_and_reports_a_broken_file_once(served, caplog) -> None:
    """Triton's poll mode: a model directory added to the repository is served at the next poll; one
    whose config.pbtxt does not parse is reported (RepositoryIndex reason, counter, one ERROR line) once,
    not on every poll, and retried when its files change."""
    reloader = ModelReloader(served.manager, {}, {"pipeline": lambda: list(STAGES)}, drain_s=1.0,
                             discover=served.manager.repository.names)
    assert await reloader.poll_once() == []
    _write_version(served.root, "newcomer", 1, {"offset": 5.0})
    outcomes = await reloader.poll_once()
    assert [(o.model, o.state) for o in outcomes] == [("newcomer", "swapped")]
    assert served.manager.is_ready("newcomer")
    out = await served.manager.infer("newcomer", {"x": np.zeros((1, 1), np.float32)})
    assert float(out["y"][0, 0]) == 5.0
    _write_version(served.root, "typo", 1, {"offset": 1.0})
    (served.root / "typo" / "config.pbtxt").write_text("max_batch_sise: 4\n")
    with caplog.at_level("ERROR"):
        first = await reloader.poll_once()
        again = await reloader.poll_once()
    assert [(o.model, o.state) for o in first] == [("typo", "failed")] and again == []
    assert "typo/config.pbtxt does not parse" in served.manager.load_failures["typo"].reason
    assert len([r for r in caplog.records if "typo" in r.getMessage()]) == 1
    assert not any(r.exc_info for r in caplog.records)
    (served.root / "typo" / "config.pbtxt").write_text(CONFIG.format(name="typo"))
    assert [(o.model, o.state) for o in await reloader.poll_once()] == [("typo", "swapped")]
