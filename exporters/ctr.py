"""Exports a trained DIN checkpoint into the model repository (parity-checked)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from exporters.onnx_export import OPSET, check_parity, export_onnx
from exporters.repository import ServingConfig, sha256_file, write_model
from models.ctr.din import DeepInterestNetwork
from models.ctr.train import read_checkpoint

# How the runtime's batcher pads DIN requests of different lengths (services/runtime/padding.py).
RAGGED_DIMS = {
    "history": {"inputs": {"history_items": 1, "history_categories": 1, "history_mask": 1},
                "outputs": {"activation_weights": 2}},
    "candidates": {"inputs": {"candidate_items": 1, "candidate_categories": 1},
                   "outputs": {"click_probability": 1, "activation_weights": 1}},
}

# (batch, history, candidates) shapes the parity check runs, sizes 1 included on purpose.
PARITY_SHAPES = ((1, 1, 1), (1, 50, 100), (2, 7, 3), (4, 13, 1), (3, 1, 20), (8, 33, 17), (1, 100, 5))


def parity_inputs(model: DeepInterestNetwork, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(seed)
    return [model.example_inputs(b, t, n, generator=generator) for b, t, n in PARITY_SHAPES]


def export_din(checkpoint: Path, repository: Path, name: str = "din-fp32",
               serving: ServingConfig | None = None) -> Path:
    """Exports, fails on a parity miss (> 1e-5), writes <repository>/<name>/1/."""
    model, ckpt = read_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx")
        parity = check_parity(model, onnx_path, parity_inputs(model), atol=1e-5)
        meta = {
            "family": "ctr",
            "architecture": "din",
            "variant": ckpt.get("variant", model.config.pooling + "/" + model.config.activation),
            "recipe": "fp32",
            "source_checkpoint": checkpoint.name,
            "source_checkpoint_sha256": sha256_file(checkpoint),
            "quality": ckpt.get("metrics", {}),
            "vocabulary": {"n_items": model.config.n_items, "n_categories": model.config.n_categories},
            "parity_max_abs_diff": parity,
            "batching": {"ragged_dims": RAGGED_DIMS},
            "onnx_opset": OPSET,
            "torch_version": torch.__version__,
        }
        return write_model(repository, name, onnx_path, meta, serving or ServingConfig())
