"""Session fixture: a tiny Entropic Student (teacher + both stages, seconds) exported into a real
model repository, plus held-out images the tests classify."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass(frozen=True)
class TinySplitCompute:
    repository: Path
    checkpoint: Path
    encoder_bundle: Path  # the edge graph's version dir (model.onnx + meta.json with the codec)
    images: np.ndarray  # (N, 3, 96, 96) uint8 held-out images
    labels: np.ndarray  # (N,)


@pytest.fixture(scope="session")
def tiny_splitcompute(tmp_path_factory: pytest.TempPathFactory) -> TinySplitCompute:
    from exporters.splitcompute import export_splitcompute
    from models.splitcompute.data import ShapeDataConfig, make_shape_data
    from models.splitcompute.train import TrainConfig, run

    root = tmp_path_factory.mktemp("splitcompute")
    data_cfg = ShapeDataConfig(n_train=320, n_valid=64, n_test=200, seed=11)
    train_cfg = TrainConfig(teacher_epochs=1, stage1_epochs=2, stage2_epochs=1, batch_size=32, betas=(0.04,))
    summary = run(root / "artifacts", data_cfg, train_cfg, log=False)
    checkpoint = root / "artifacts" / summary["default"]
    written = export_splitcompute(checkpoint, root / "repo")
    images, labels = make_shape_data(data_cfg).split("test")
    return TinySplitCompute(root / "repo", checkpoint, written["encoder"], images, labels)
