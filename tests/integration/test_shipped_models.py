"""The shipped model repository (shipped_models/, committed): every file matches its manifest, the
repository stays small, every model loads in onnxruntime and answers finite outputs, and its export
parity figure is within bounds. `make ship-models` rebuilds it; `make verify-models` retrains and compares."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from exporters.ship import MANIFEST, MAX_BYTES, SUMMARY, compare, quality_figures, sha256
from infersuite.services.runtime import RuntimeSettings
from infersuite.services.runtime.backends.onnxruntime import OnnxRuntimeBackend
from infersuite.services.runtime.repository import ModelRepository

SHIPPED = Path(__file__).resolve().parents[2] / "shipped_models"
MANIFESTS = sorted(SHIPPED.glob(f"*/{MANIFEST}"))
PARITY_BOUND = 1e-3  # torch vs ONNX at export; the exporters' own gates are at least this strict


def test_every_model_has_a_manifest_and_every_file_matches_it() -> None:
    repository = ModelRepository(SHIPPED)
    assert repository.names(), "shipped_models/ is empty: run `make ship-models`"
    assert sorted(p.parent.name for p in MANIFESTS) == repository.names()
    summary = json.loads((SHIPPED / SUMMARY).read_text())
    assert summary["models"] == repository.names()
    total = 0
    for path in MANIFESTS:
        manifest = json.loads(path.read_text())
        on_disk = {str(p.relative_to(path.parent)) for p in path.parent.rglob("*") if p.is_file()} - {MANIFEST}
        assert set(manifest["files"]) == on_disk, path.parent.name
        for name, digest in manifest["files"].items():
            assert sha256(path.parent / name) == digest, f"{path.parent.name}/{name} differs from its manifest"
        assert manifest["built_by"].startswith(("python -m exporters.build", "make "))
        assert manifest["code_revision"] and manifest["seeds"]
        total += manifest["size_bytes"]
    assert total == summary["size_bytes"] <= MAX_BYTES


def test_manifest_quality_is_the_meta_quality_and_reproduces_against_itself() -> None:
    for path in MANIFESTS:
        manifest = json.loads(path.read_text())
        meta = json.loads((path.parent / manifest["version"] / "meta.json").read_text())
        assert manifest["quality"] == quality_figures(meta.get("quality"))
        assert all(ok for *_, ok in compare(manifest, meta))
        if manifest["tolerances"]:  # a figure 2x its tolerance away must fail the check
            name, bound = next(iter(manifest["tolerances"].items()))
            moved = dict(meta["quality"]) if isinstance(meta["quality"], dict) else None
            if moved is not None and name in moved:
                moved[name] = moved[name] + 2 * (bound.get("abs", 0) + bound.get("rel", 0) * abs(moved[name])) + 1e-9
                assert not all(ok for *_, ok in compare(manifest, {"quality": moved}))


def _example_inputs(specs, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Dynamic dims of 2; floats uniform in [0, 1), integers 1 (a valid id: 0 is padding)."""
    inputs = {}
    for spec in specs:
        zeros = spec.example(dynamic_size=2)
        inputs[spec.name] = (rng.random(zeros.shape).astype(zeros.dtype) if zeros.dtype.kind == "f"
                             else np.ones_like(zeros))
    return inputs


@pytest.mark.parametrize("name", [p.parent.name for p in MANIFESTS])
async def test_model_loads_and_answers_finite_outputs_with_export_parity(name: str) -> None:
    entry = ModelRepository(SHIPPED).resolve(name)
    assert entry.meta["parity_max_abs_diff"] <= PARITY_BOUND
    model = await OnnxRuntimeBackend(RuntimeSettings(intra_op_threads=1)).load(entry)
    try:
        outputs = await model.infer(_example_inputs(model.inputs, np.random.default_rng(0)))
    finally:
        await model.close()
    assert outputs
    for output, values in outputs.items():
        assert values.size and np.isfinite(values.astype(np.float64)).all(), f"{name}: {output} is not finite"


@pytest.mark.parametrize("name", [p.parent.name for p in MANIFESTS if p.parent.name.startswith("audio-")])
async def test_shipped_audio_embedders_are_finite_on_silence_and_extremes(name: str) -> None:
    """Silence, tiny and huge samples: the graph's log guard must have survived the export (a shipped
    graph from before the guard answered NaN on silence, the service then fails the request)."""
    entry = ModelRepository(SHIPPED).resolve(name)
    model = await OnnxRuntimeBackend(RuntimeSettings(intra_op_threads=1)).load(entry)
    spec = model.inputs[0]
    length = spec.example(dynamic_size=32000).shape[-1]
    try:
        for level in (0.0, 1e-30, 1e20):
            outputs = await model.infer({spec.name: np.full((1, length), level, np.float32)})
            for output, values in outputs.items():
                assert np.isfinite(values).all(), f"{name}: {output} is not finite for samples of {level:g}"
    finally:
        await model.close()
