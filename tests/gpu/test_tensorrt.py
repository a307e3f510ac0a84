"""GPU-only: every shipped model (shipped_models/, the graphs the serving image serves) on onnxruntime's
CUDA and TensorRT execution providers, against the CPU provider on the same inputs.

Needs no torch and no training, so it runs where the serving image runs: numpy, onnxruntime-gpu and
the repository checkout. Skipped on CPU machines with the reason printed (`pytest -rs`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

PROVIDERS = ort.get_available_providers()
SHIPPED = Path(__file__).resolve().parents[2] / "shipped_models"
MODELS = sorted(path.parent.parent.name for path in SHIPPED.glob("*/*/model.onnx"))
# Sizes for the graphs' named dynamic axes; an axis named nowhere here gets 2 (the runtime's warm-up size).
DYNAMIC_SIZES = {"users": 4, "history": 30, "rows": 200}
pytestmark = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(
    "CUDAExecutionProvider" not in PROVIDERS,
    reason=f"needs an NVIDIA GPU with onnxruntime-gpu (onnxruntime providers here: {PROVIDERS})")


def _model(name: str) -> tuple[Path, dict]:
    version = max((p for p in (SHIPPED / name).iterdir() if p.is_dir()), key=lambda p: int(p.name))
    meta = version / "meta.json"
    return version / "model.onnx", json.loads(meta.read_text()) if meta.exists() else {}


def _inputs(session: ort.InferenceSession, meta: dict) -> dict[str, np.ndarray]:
    """Valid inputs for any shipped graph: floats from a unit normal, integer ids inside the ranges its
    meta.json declares (an index below another input's axis when it says so)."""
    rng, limits = np.random.default_rng(0), meta.get("limits", {}).get("inputs", {})
    shapes = {spec.name: [d if isinstance(d, int) else DYNAMIC_SIZES.get(d, 2) for d in spec.shape]
              for spec in session.get_inputs()}
    feeds = {}
    for spec in session.get_inputs():
        shape, limit = shapes[spec.name], limits.get(spec.name, {})
        if spec.type == "tensor(float)":
            low, high = limit.get("range", [None, None])
            values = rng.standard_normal(shape) if low is None else rng.uniform(low, high, shape)
            feeds[spec.name] = values.astype(np.float32)
        elif spec.type == "tensor(int64)":
            low, high = limit.get("range", [0, 1])
            if "below_dim" in limit:
                other, axis = limit["below_dim"]
                high = shapes[other][axis] - 1
            feeds[spec.name] = rng.integers(low, high + 1, shape).astype(np.int64)
        else:
            raise AssertionError(f"no input generator for {spec.name}: {spec.type} (extend this test)")
    return feeds


def test_every_shipped_model_gets_valid_inputs_on_the_cpu() -> None:
    """Runs everywhere: the GPU test below has models to run and inputs each graph accepts."""
    assert MODELS, f"no model.onnx under {SHIPPED}"
    for model in MODELS:
        path, meta = _model(model)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs = session.run(None, _inputs(session, meta))
        assert all(np.isfinite(out).all() for out in outputs if out.dtype.kind == "f"), model


@needs_gpu
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_gpu_provider_matches_cpu_on_every_shipped_model(provider, model, tmp_path) -> None:
    if provider not in PROVIDERS:
        pytest.skip(f"{provider} is not available here (onnxruntime providers: {PROVIDERS}); needs an NVIDIA GPU "
                    "with onnxruntime-gpu (TensorRT: its libraries on the library path)")
    path, meta = _model(model)
    # fp32 on both: CUDA without TF32; TensorRT builds fp32 engines unless fp16 is asked for, but may use TF32
    # on Ampere and later, hence the tolerance relative to each output's scale.
    options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(tmp_path),
               "trt_timing_cache_enable": True} if provider == "TensorrtExecutionProvider" else {"use_tf32": 0}
    gpu = ort.InferenceSession(str(path), providers=[(provider, options), "CPUExecutionProvider"])
    cpu = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert gpu.get_providers()[0] == provider
    feeds = _inputs(cpu, meta)
    names = [out.name for out in cpu.get_outputs()]
    for name, want, got in zip(names, cpu.run(None, feeds), gpu.run(None, feeds), strict=True):
        scale = max(float(np.abs(want).max()), 1.0) if want.size else 1.0
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2 * scale, err_msg=f"{model}: {name} on {provider}")
