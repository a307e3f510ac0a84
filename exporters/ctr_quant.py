"""The DIN family as seen by the quantization recipes (exporters/quantize)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from exporters.onnx_export import export_onnx
from exporters.quantize.family import RecipeRefused
from models.ctr.data import ClickData, ClickDataConfig, make_click_data, user_batch
from models.ctr.din import DeepInterestNetwork
from models.ctr.din_rows import DinRows
from models.ctr.metrics import score_report
from models.ctr.qat import finetune, freeze, qat_finetune
from models.ctr.train import read_checkpoint

GRID_INPUTS = DeepInterestNetwork.input_names
CALIBRATION_BATCH = 32
CALIBRATION_CANDIDATES = 20  # fixed shapes: entropy/percentile calibration fails on ragged batches


class CtrQuantization:
    family = "ctr"
    metric = "test GAUC"
    max_relative_loss = 0.01

    def __init__(self, checkpoint: Path, repository: Path, name: str = "din-fp32", data: ClickData | None = None,
                 fp32: Path | None = None):
        self._checkpoint = checkpoint
        self._model, ckpt = read_checkpoint(checkpoint)
        self.checkpoint_metrics: dict[str, Any] = ckpt.get("metrics", {})  # the training run's figures
        self.data: ClickData = data or make_click_data(ClickDataConfig(**ckpt["data_config"]))
        self._fp32 = fp32 or repository / name / "1" / "model.onnx"
        self.test_reports: dict[str, dict[str, float]] = {}  # graph path -> {"auc", "gauc"} of each `evaluate`

    def graphs(self) -> dict[str, Path]:
        return {"din": self._fp32}

    def _fixed_batch(self, users: np.ndarray) -> dict[str, np.ndarray]:
        """Rows-layout inputs of fixed shape: (B, max_history) histories and 20 rows per user
        (padding candidates, id 0, included as rows)."""
        batch = {k: v.numpy() for k, v in user_batch(self.data, users).items() if k in GRID_INPUTS}
        t, n = self.data.config.max_history, CALIBRATION_CANDIDATES
        fixed = {}
        for name, value in batch.items():
            width = t if name.startswith("history") else n
            out = np.zeros((len(users), width), value.dtype)
            out[:, : min(width, value.shape[1])] = value[:, :width]
            fixed[name] = out
        return _rows(fixed, np.ones_like(fixed["candidate_items"], dtype=bool))

    def calibration(self, graph: str, count: int) -> list[dict[str, np.ndarray]]:
        users = self.data.valid_users
        return [self._fixed_batch(users[i * CALIBRATION_BATCH:(i + 1) * CALIBRATION_BATCH])
                for i in range(min(count, len(users) // CALIBRATION_BATCH))]

    def evaluate(self, graphs: dict[str, Path]) -> float:
        rows, scores = onnx_scores(graphs["din"], self.data, self.data.test_users)
        report = score_report(self.data.labels[rows], scores, self.data.user_index[rows])
        self.test_reports[str(graphs["din"])] = {k: float(report[k]) for k in ("auc", "gauc")}
        return float(report["gauc"])

    def latency_inputs(self, graph: str, batch: int) -> dict[str, np.ndarray]:
        return self._fixed_batch(self.data.test_users[:batch])

    def qat(self, graph: str, out: Path) -> Path:
        """The float graph of a QAT fine-tune (fake quantizers in the int8-static-minmax scheme),
        for a recipe that converts it with a fresh calibration."""
        if graph != "din":
            raise RecipeRefused(f"no QAT loop for graph {graph!r}")
        model, _ = read_checkpoint(self._checkpoint)
        with torch.enable_grad():
            tuned = qat_finetune(model, self.data, epochs=1, scheme="int8-static-minmax")
        return export_onnx(DinRows(tuned), out)

    def qat_qdq(self, graph: str, out: Path, scheme: str = "int8-static-minmax", epochs: int = 1) -> Path:
        """The deployable int8 graph of a QAT fine-tune: its Q/DQ pairs carry the QAT observers'
        scales and zero points (models.ctr.qat.freeze), no re-calibration. `scheme` names the
        conversion whose granularity and symmetry the fake quantizers follow."""
        if graph != "din":
            raise RecipeRefused(f"no QAT loop for graph {graph!r}")
        model, _ = read_checkpoint(self._checkpoint)
        with torch.enable_grad():
            tuned = finetune(model, self.data, epochs=epochs, scheme=scheme)
        return export_onnx(DinRows(freeze(tuned)), out)


def onnx_scores(path: Path, data: ClickData, users: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Click probabilities of every impression of `users` from a rows-layout graph in
    onnxruntime -> (impression rows, scores)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows, scores = [], []
    for start in range(0, len(users), batch):
        grid = user_batch(data, users[start:start + batch])
        valid = grid["candidate_mask"].numpy() > 0
        feed = _rows({k: grid[k].numpy() for k in GRID_INPUTS}, valid)
        scores.append(session.run(["click_probability"], feed)[0])  # (R,) in the order of `valid`
        rows.append(grid["impression_rows"].numpy()[valid])
    return np.concatenate(rows), np.concatenate(scores)


def _rows(grid: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    """Training-layout arrays ((B, T) histories, (B, N) candidates) -> the served rows layout,
    one row per kept candidate slot, in row-major order."""
    users = np.broadcast_to(np.arange(keep.shape[0])[:, None], keep.shape)
    return {"history_items": grid["history_items"], "history_categories": grid["history_categories"],
            "history_mask": grid["history_mask"], "candidate_items": grid["candidate_items"][keep],
            "candidate_categories": grid["candidate_categories"][keep], "candidate_user": users[keep].astype(np.int64)}
