"""The teacher fine-tuned on codec-decoded inputs: the stronger input-compression baseline.

A teacher trained on clean images only meets compression artefacts first at test time, which
makes JPEG/WebP look worse than they need to. Here the trained teacher is fine-tuned on images
that went through JPEG (4:2:0 or 4:4:4 chroma) or WebP at a random quality (and some clean
ones), re-drawn every epoch; the epoch with the best validation accuracy over equally
augmented validation images (one fixed draw) is kept. Pillow does the coding, as in the report.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from models.splitcompute.data import ShapeData, iterate_batches, to_float
from models.splitcompute.teacher import TeacherCNN
from models.splitcompute.train import TrainConfig, _optimizer, _steps, accuracy_of, predict_teacher

# (format, Pillow options) of the augmentations; quality is drawn per image
CODECS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("JPEG", {"subsampling": 2}), ("JPEG", {"subsampling": 0}), ("WEBP", {"method": 4}))


@dataclass(frozen=True)
class AugmentConfig:
    epochs: int = 3  # fine-tuning passes over the training images
    lr: float = 1e-3  # peak Adam learning rate (one-cycle)
    clean_share: float = 0.2  # share of images left uncompressed
    min_quality: int = 1  # qualities drawn uniformly from [min, max]
    max_quality: int = 100
    seed: int = 0


def roundtrip(image_chw: np.ndarray, fmt: str, quality: int, **options: Any) -> np.ndarray:
    """(3, H, W) uint8 -> the same image after coding with `fmt` at `quality` and decoding."""
    buffer = io.BytesIO()
    Image.fromarray(image_chw.transpose(1, 2, 0)).save(buffer, format=fmt, quality=quality, **options)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).transpose(2, 0, 1)


def augment(images: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Each image coded by a random codec at a random quality, or left clean (share `clean_share`)."""
    out = images.copy()
    for i in range(len(images)):
        if rng.random() < cfg.clean_share:
            continue
        fmt, options = CODECS[int(rng.integers(len(CODECS)))]
        out[i] = roundtrip(images[i], fmt, int(rng.integers(cfg.min_quality, cfg.max_quality + 1)), **options)
    return out


def finetune_with_codecs(teacher: TeacherCNN, data: ShapeData, cfg: AugmentConfig) -> tuple[TeacherCNN, dict]:
    """A copy of `teacher` fine-tuned on augmented images -> (model, metrics)."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = copy.deepcopy(teacher)
    images, labels = data.split("train")
    valid_images, valid_labels = data.split("valid")
    valid_augmented = augment(valid_images, np.random.default_rng(cfg.seed + 1), cfg)
    train_cfg = TrainConfig(lr=cfg.lr)
    optimizer, schedule = _optimizer(list(model.parameters()), train_cfg, _steps(len(labels), train_cfg, cfg.epochs))
    best = {"valid_augmented_accuracy": accuracy_of(predict_teacher(model, valid_augmented), valid_labels),
            "best_epoch": 0}
    state = copy.deepcopy(model.state_dict())
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for x, y in iterate_batches(augment(images, rng, cfg), labels, train_cfg.batch_size, rng):
            loss = F.cross_entropy(model(torch.from_numpy(to_float(x))), torch.from_numpy(y))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        accuracy = accuracy_of(predict_teacher(model, valid_augmented), valid_labels)
        if accuracy > best["valid_augmented_accuracy"]:
            best, state = {"valid_augmented_accuracy": accuracy, "best_epoch": epoch}, copy.deepcopy(model.state_dict())
    model.load_state_dict(state)
    best["valid_accuracy"] = accuracy_of(predict_teacher(model, valid_images), valid_labels)
    return model.eval(), best
