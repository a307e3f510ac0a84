"""Exports a trained DIN checkpoint into the model repository (parity-checked)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from exporters.onnx_export import OPSET, check_parity, export_onnx
from exporters.repository import ServingConfig, sha256_file, write_model
from models.ctr.din import DeepInterestNetwork
from models.ctr.din_rows import DinRows, grid_to_rows
from models.ctr.train import read_checkpoint

if TYPE_CHECKING:
    from exporters.quantize.family import QuantFamily

# How the runtime's batcher combines DIN requests (infersuite/services/runtime/batch_layout.py): histories are
# stacked per user and padded to the batch's longest; candidates are rows, concatenated, each
# pointing at its user, so a batch costs sum(N_i) x T_max. Triton cannot batch this layout (its
# config gets max_batch_size 0 and serves one request per execution); the embedded runtime can.
RAGGED_DIMS = {
    "history": {"inputs": {"history_items": 1, "history_categories": 1, "history_mask": 1},
                "outputs": {"activation_weights": 1}},
}
ROWS = {
    "inputs": ["candidate_items", "candidate_categories", "candidate_user"],
    "outputs": ["click_probability", "activation_weights"],
    "group_index": {"candidate_user": "history_items"},
    "max_rows": 4096,  # candidates per execution
    "max_cells": 32768,  # candidates x padded history per execution: keeps the (R, T, H) activations cache-sized
    "max_queue_delay_us": 2000,
}

# Worst-case request bounds (infersuite/services/runtime/limits.py). DIN's memory grows with candidate rows x
# history ("attention cells": the (R, T, H) activations), so one request's cells are capped besides
# each axis; reports/reliability.md measures the peak memory of a request at these limits
# (python -m benchmarks.reliability.hostile).
MAX_USERS, MAX_HISTORY, MAX_CANDIDATES, MAX_ATTENTION_CELLS = 256, 1024, 4096, 1 << 18


def din_limits(n_items: int, n_categories: int) -> dict[str, Any]:
    """meta.json `limits` of the rows layout: axis maxima, id ranges (0 = padding), each candidate's
    user index below the number of histories, and the attention-cell budget."""
    history, rows = [MAX_USERS, MAX_HISTORY], [MAX_CANDIDATES]
    return {
        "max_elements": 3 * MAX_USERS * MAX_HISTORY + 3 * MAX_CANDIDATES,
        "inputs": {
            "history_items": {"max_shape": history, "range": [0, n_items]},
            "history_categories": {"max_shape": history, "range": [0, n_categories]},
            "history_mask": {"max_shape": history, "range": [0, 1]},
            "candidate_items": {"max_shape": rows, "range": [0, n_items]},
            "candidate_categories": {"max_shape": rows, "range": [0, n_categories]},
            "candidate_user": {"max_shape": rows, "range": [0, None], "below_dim": ["history_items", 0]},
        },
        "products": {"attention_cells": {"axes": [["candidate_items", 0], ["history_items", 1]],
                                         "max": MAX_ATTENTION_CELLS}},
    }


# (users, history, candidates) shapes the parity check runs, sizes 1 included on purpose.
PARITY_SHAPES = ((1, 1, 1), (1, 50, 100), (2, 7, 3), (4, 13, 1), (3, 1, 20), (8, 33, 17), (1, 100, 5),
                 (1, 100, 500))


def parity_inputs(model: DeepInterestNetwork, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    """Rows-layout inputs; the last set has an empty history (one padding slot, mask 0), as the
    ctr service sends it."""
    generator = torch.Generator().manual_seed(seed)
    sets = [grid_to_rows(model.example_inputs(b, t, n, generator=generator)) for b, t, n in PARITY_SHAPES]
    items, categories, mask, *rows = grid_to_rows(model.example_inputs(1, 1, 4, generator=generator))
    sets.append((items * 0, categories * 0, mask * 0, *rows))
    return sets


def export_din(checkpoint: Path, repository: Path, name: str = "din-fp32",
               serving: ServingConfig | None = None) -> Path:
    """Exports the rows-layout graph, fails on a parity miss (> 1e-5), writes <repository>/<name>/1/."""
    model, ckpt = read_checkpoint(checkpoint)
    rows = DinRows(model)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(rows, Path(tmp) / "model.onnx")
        parity = check_parity(rows, onnx_path, parity_inputs(model), atol=1e-5)
        meta = {
            "family": "ctr",
            "architecture": "din",
            "layout": "rows",
            "variant": ckpt.get("variant", model.config.pooling + "/" + model.config.activation),
            "recipe": "fp32",
            "source_checkpoint": checkpoint.name,
            "source_checkpoint_sha256": sha256_file(checkpoint),
            "quality": ckpt.get("metrics", {}),
            "vocabulary": {"n_items": model.config.n_items, "n_categories": model.config.n_categories,
                           # a model trained on a user's click log maps their ids (models/ctr/user_data.py)
                           **({"external": ckpt["external_vocabulary"]} if "external_vocabulary" in ckpt else {})},
            "parity_max_abs_diff": parity,
            "batching": {"ragged_dims": RAGGED_DIMS, "rows": ROWS},
            "limits": din_limits(model.config.n_items, model.config.n_categories),
            "onnx_opset": OPSET,
            "torch_version": torch.__version__,
        }
        return write_model(repository, name, onnx_path, meta, serving or ServingConfig(max_batch_size=0))


# --- the family's exporter part (found by exporters.families by this module's name) --------------

def build(artifacts: Path, repository: Path, quick: bool) -> Path:
    """`python -m exporters.build --families ctr`: trains DIN when no checkpoint exists, exports din-fp32."""
    from exporters.repository import set_default_alias

    checkpoint = artifacts / "ctr" / "din_dice.pt"
    if not checkpoint.is_file():
        from models.ctr import train  # torch training only when needed

        train.main(["--out", str(checkpoint.parent), *(["--quick"] if quick else [])])
    written = export_din(checkpoint, repository, "din-fp32")
    set_default_alias(repository, "din", "din-fp32", overwrite=False)
    return written


def quant_families(repository: Path, artifacts: Path) -> list[QuantFamily]:
    """What the quantization report measures: DIN, when built and its checkpoint is at hand."""
    checkpoint = artifacts / "ctr" / "din_dice.pt"
    if not ((repository / "din-fp32").is_dir() and checkpoint.is_file()):
        return []
    from exporters.ctr_quant import CtrQuantization

    return [CtrQuantization(checkpoint, repository)]


def seed_configs() -> list[Any]:
    """The default data and training configs, whose seeds the shipped manifests record."""
    from models.ctr.data import ClickDataConfig
    from models.ctr.train import TrainConfig

    return [ClickDataConfig(), TrainConfig()]
