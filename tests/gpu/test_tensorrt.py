"""GPU-only: the exported graphs on onnxruntime's CUDA and TensorRT execution providers.

Skipped on CPU machines with the reason printed (`pytest -rs`)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

PROVIDERS = ort.get_available_providers()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    "CUDAExecutionProvider" not in PROVIDERS,
    reason=f"needs an NVIDIA GPU with onnxruntime-gpu (onnxruntime providers here: {PROVIDERS})")]


def _inputs(n_items: int, n_categories: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"history_items": rng.integers(1, n_items + 1, (4, 30)), "history_categories":
            rng.integers(1, n_categories + 1, (4, 30)), "history_mask": np.ones((4, 30), np.float32),
            "candidate_items": rng.integers(1, n_items + 1, 200),  # rows layout: 50 rows per user
            "candidate_categories": rng.integers(1, n_categories + 1, 200),
            "candidate_user": np.repeat(np.arange(4), 50)}


@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_gpu_provider_matches_cpu(provider, tiny_ctr, tmp_path) -> None:
    if provider not in PROVIDERS:
        pytest.skip(f"{provider} is not available here (onnxruntime providers: {PROVIDERS}); needs an NVIDIA GPU "
                    "with onnxruntime-gpu")
    path = str(tiny_ctr.repository / "din-fp32" / "1" / "model.onnx")
    options = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(tmp_path),
               "trt_timing_cache_enable": True} if provider == "TensorrtExecutionProvider" else {}
    gpu = ort.InferenceSession(path, providers=[(provider, options), "CPUExecutionProvider"])
    cpu = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {k: v.astype(np.int64) if v.dtype != np.float32 else v
             for k, v in _inputs(tiny_ctr.n_items, tiny_ctr.n_categories).items()}
    np.testing.assert_allclose(gpu.run(None, feeds)[0], cpu.run(None, feeds)[0], atol=1e-3)
    assert gpu.get_providers()[0] == provider
