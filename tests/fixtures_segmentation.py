"""Session fixture: a tiny ECO-M2F (3 encoder layers) trained in seconds on synthetic scenes,
gated, and exported as staged graphs into a real model repository."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

TINY_MODEL = {"n_layers": 3, "d_model": 32, "n_heads": 2, "ffn_dim": 64, "widths": (16, 24, 32), "head_dim": 16,
              "gate_hidden": 16}


@dataclass(frozen=True)
class TinySegmentation:
    repository: Path
    checkpoint: Path
    images: np.ndarray  # (N, 64, 64, 3) uint8 held-out scenes
    labels: np.ndarray  # (N, 64, 64) uint8 their ground truth


@pytest.fixture(scope="session")
def tiny_segmentation(tmp_path_factory: pytest.TempPathFactory) -> TinySegmentation:
    from exporters.segmentation import export_segmentation
    from models.segmentation.data import SceneConfig, make_scenes
    from models.segmentation.eco_m2f import EcoM2FConfig
    from models.segmentation.train import TrainConfig, run

    root = tmp_path_factory.mktemp("segmentation")
    scene_cfg = SceneConfig(n_images=120, seed=5)
    run(scene_cfg, EcoM2FConfig(**TINY_MODEL), TrainConfig(epochs=1, batch_size=16, gate_epochs=10), beta=0.01,
        out=root, progress=False)
    export_segmentation(root / "eco_m2f.pt", root / "repo", holdout=8)
    scenes = make_scenes(scene_cfg)
    return TinySegmentation(root / "repo", root / "eco_m2f.pt", scenes.images[scenes.test],
                            scenes.labels[scenes.test])
