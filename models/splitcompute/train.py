"""Teacher training and the Entropic Student's two-stage training with a sweep over beta.

Matsubara et al., "Supervised Compression for Resource-Constrained Edge Computing Systems"
(WACV 2022), section 3.2:
- stage 1: the student's encoder, prior and decoder learn to reproduce the teacher's stem
  features (MSE) while the rate -log2 p(y~) of the noisy latent is weighed by beta (eq. 2);
  the tail is the teacher's, frozen. With `tail_distillation` the loss also sums the MSE at the
  output of every teacher layer after the split, the student's features passed through the frozen
  teacher layers (the paper's configuration: sc2-benchmark distils ResNet's layer1..layer4);
- stage 2: encoder and prior are frozen; the decoder and tail are fine-tuned on the
  hard-quantized latent with knowledge distillation (Hinton et al.: KL between temperature-
  softened teacher and student outputs, times T^2) plus cross-entropy on the labels.

    python -m models.splitcompute.train --out artifacts/splitcompute            # ~5 min on 2 cores
    python -m models.splitcompute.train --out /tmp/sc --quick                   # seconds
    python -m models.splitcompute.train --data my_images --out artifacts/sc-mine --repository my_models
        # your own images, one folder per class (models/splitcompute/user_data.py)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from models.splitcompute.data import CLASS_NAMES, ShapeData, ShapeDataConfig, iterate_batches, to_float
from models.splitcompute.entropy import bits
from models.splitcompute.student import Encoder, EntropicStudent, StudentConfig
from models.splitcompute.teacher import TeacherCNN


class Checkpointable(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def config_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class TrainConfig:
    teacher_epochs: int = 4  # passes over the training images for the teacher
    stage1_epochs: int = 2  # feature distillation + rate, per beta
    stage2_epochs: int = 2  # decoder + tail fine-tuning on quantized latents, per beta
    batch_size: int = 64  # images per step
    lr: float = 3e-3  # Adam learning rate (cosine-decayed to 0 within each stage)
    betas: tuple[float, ...] = (0.01, 0.05, 0.25)  # rate weights (per bit-per-pixel) of the sweep
    rate_warmup: float = 0.5  # share of stage 1 over which beta ramps up linearly from 0
    prior_lr_factor: float = 10.0  # the prior's density parameters learn this much faster (they start broad)
    kd_temperature: float = 4.0  # softening of teacher and student outputs in stage 2
    kd_weight: float = 0.7  # share of the KD term in stage 2 (the rest is cross-entropy)
    tail_distillation: bool = False  # stage 1 also matches the frozen tail's layer outputs (multi-layer)
    seed: int = 0  # initialisation and batch order
    student: StudentConfig = field(default_factory=StudentConfig)  # architecture of every student


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Runs torch on one thread inside the block. On the shared 2-core build machine, two OpenMP
    threads that wait on each other's barrier ran 6x (convolutions) to 25x (the prior's small
    matmuls) slower than one thread under load (measured with load average ~15)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _optimizer(params: list[Any], cfg: TrainConfig, steps: int) -> tuple[Any, Any]:
    """Adam with a one-cycle schedule; parameter groups may carry their own peak lr."""
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    peaks = [group["lr"] for group in optimizer.param_groups]
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, peaks, total_steps=max(steps, 1), pct_start=0.15)
    return optimizer, schedule


def _steps(n: int, cfg: TrainConfig, epochs: int) -> int:
    return epochs * -(-n // cfg.batch_size)


@torch.no_grad()
def predict_teacher(teacher: TeacherCNN, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Teacher logits (N, K) for uint8 images (N, 3, H, W)."""
    teacher.eval()
    out = [teacher(torch.from_numpy(to_float(images[i : i + batch_size]))) for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def train_teacher(data: ShapeData, cfg: TrainConfig) -> tuple[TeacherCNN, dict[str, Any]]:
    """Cross-entropy training; keeps the epoch with the best validation accuracy."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    teacher = TeacherCNN(cfg.student.teacher)
    images, labels = data.split("train")
    optimizer, schedule = _optimizer(list(teacher.parameters()), cfg, _steps(len(labels), cfg, cfg.teacher_epochs))
    best: dict[str, Any] = {"valid_accuracy": -1.0}
    curve = []  # validation accuracy after each epoch
    # Bars show on a terminal only (disable=None): a person waiting sees epochs and an ETA, logs stay clean.
    for epoch in tqdm(range(1, cfg.teacher_epochs + 1), desc="splitcompute teacher", unit="epoch", leave=False,
                      disable=None):
        teacher.train()
        for x, y in iterate_batches(images, labels, cfg.batch_size, rng):
            loss = F.cross_entropy(teacher(torch.from_numpy(to_float(x))), torch.from_numpy(y))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        accuracy = accuracy_of(predict_teacher(teacher, data.split("valid")[0]), data.split("valid")[1])
        curve.append(accuracy)
        if accuracy > best["valid_accuracy"]:
            best, state = {"valid_accuracy": accuracy, "best_epoch": epoch}, copy.deepcopy(teacher.state_dict())
    teacher.load_state_dict(state)
    best["valid_accuracy_curve"] = curve
    test_images, test_labels = data.split("test")
    best["test_accuracy"] = accuracy_of(predict_teacher(teacher, test_images), test_labels)
    return teacher.eval(), best


def accuracy_of(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def _distillation_loss(features: torch.Tensor, target: torch.Tensor, frozen_tail: nn.Sequential | None) -> torch.Tensor:
    """MSE at the split, plus at every frozen teacher layer after it when `frozen_tail` is given."""
    loss = F.mse_loss(features, target)
    if frozen_tail is not None:
        for layer in frozen_tail:
            features, target = layer(features), layer(target).detach()
            loss = loss + F.mse_loss(features, target)
    return loss


def _stage1(student: EntropicStudent, teacher: TeacherCNN, images: np.ndarray, beta: float, cfg: TrainConfig) -> None:
    """Feature distillation + beta * bits per pixel; trains encoder, prior and decoder."""
    rng = np.random.default_rng(cfg.seed + 1)
    groups = [{"params": [*student.encoder.parameters(), *student.decoder.parameters()], "lr": cfg.lr},
              {"params": list(student.prior.parameters()), "lr": cfg.lr * cfg.prior_lr_factor}]
    total = _steps(len(images), cfg, cfg.stage1_epochs)
    optimizer, schedule = _optimizer(groups, cfg, total)
    frozen_tail = (copy.deepcopy(teacher.tail.features).eval().requires_grad_(False)
                   if cfg.tail_distillation else None)
    pixels = images.shape[2] * images.shape[3]
    student.train()
    step = 0
    for _ in tqdm(range(cfg.stage1_epochs), desc=f"splitcompute student beta={beta:g} stage 1", unit="epoch",
                  leave=False, disable=None):
        for x, _labels in iterate_batches(images, np.zeros(len(images)), cfg.batch_size, rng):
            # beta ramps up from 0: with the full rate weight from the first step the latent
            # collapsed to all zeros (about 1 byte per image, chance accuracy) before the
            # decoder learned to use it.
            step += 1
            weight = beta * min(1.0, step / max(1.0, cfg.rate_warmup * total))
            image = torch.from_numpy(to_float(x))
            with torch.no_grad():
                target = teacher.forward_features(image)  # (B, C_f, H/8, W/8)
            features, likelihood = student.forward_features(image)
            rate_bpp = bits(likelihood) / (len(x) * pixels)
            loss = _distillation_loss(features, target, frozen_tail) + weight * rate_bpp
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()


@torch.no_grad()
def quantized_latents(student: EntropicStudent, images: np.ndarray, radius: int, batch_size: int = 256) -> torch.Tensor:
    """The codec's symbols as floats: clamp(round(encoder(x)), -R, R), (N, C, h, w)."""
    student.eval()
    out = [
        quantize(student.encoder(torch.from_numpy(to_float(images[i : i + batch_size]))), radius)
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)


def quantize(latent: torch.Tensor, radius: int) -> torch.Tensor:
    """What the edge codec sends: integers in the CDF table's support [-R, R]."""
    return torch.clamp(torch.round(latent), -radius, radius)


def _stage2(
    student: EntropicStudent, latents: torch.Tensor, teacher_logits: torch.Tensor, labels: np.ndarray, cfg: TrainConfig
) -> None:
    """KD + CE on hard-quantized latents; trains decoder and tail only."""
    rng = np.random.default_rng(cfg.seed + 2)
    params = [*student.decoder.parameters(), *student.tail.parameters()]
    optimizer, schedule = _optimizer(params, cfg, _steps(len(labels), cfg, cfg.stage2_epochs))
    t = cfg.kd_temperature
    student.decoder.train()
    student.tail.train()
    for _ in tqdm(range(cfg.stage2_epochs), desc="splitcompute student stage 2", unit="epoch", leave=False,
                  disable=None):
        for rows, y in iterate_batches(np.arange(len(labels)), labels, cfg.batch_size, rng):
            logits = student.tail(student.decoder(latents[rows]))
            soft_target = F.softmax(teacher_logits[rows] / t, dim=1)
            kd = F.kl_div(F.log_softmax(logits / t, dim=1), soft_target, reduction="batchmean") * t * t
            loss = cfg.kd_weight * kd + (1 - cfg.kd_weight) * F.cross_entropy(logits, torch.from_numpy(y))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    student.eval()


@torch.no_grad()
def evaluate_student(student: EntropicStudent, images: np.ndarray, labels: np.ndarray, radius: int) -> dict[str, float]:
    """Accuracy and the model's rate estimate (-log2 p of the clipped symbols) per image."""
    student.eval()
    latents = quantized_latents(student, images, radius)
    logits = torch.cat([student.tail(student.decoder(latents[i : i + 256])) for i in range(0, len(latents), 256)])
    estimate_bits = float(bits(student.prior.likelihood(latents)))
    return {
        "accuracy": accuracy_of(logits.numpy(), labels),
        "estimated_bytes_per_image": estimate_bits / 8 / len(labels),
    }


def train_student(
    teacher: TeacherCNN, data: ShapeData, beta: float, cfg: TrainConfig, teacher_logits: torch.Tensor
) -> tuple[EntropicStudent, dict[str, Any]]:
    """Both stages for one beta; the tail starts as a copy of the teacher's."""
    torch.manual_seed(cfg.seed)
    student = EntropicStudent(cfg.student)
    student.tail.load_state_dict(teacher.tail.state_dict())
    if isinstance(student.encoder, Encoder):  # the teacher-stem encoder starts as the teacher's stem
        student.encoder.stem.load_state_dict(teacher.stem.state_dict())
    images, labels = data.split("train")
    started = time.perf_counter()
    _stage1(student, teacher, images, beta, cfg)
    _, radius = student.prior.pmf_table()
    _stage2(student, quantized_latents(student, images, radius), teacher_logits, labels, cfg)
    metrics: dict[str, Any] = {"beta": beta, "support_radius": radius}
    for split in ("valid", "test"):
        for key, value in evaluate_student(student, *data.split(split), radius).items():
            metrics[f"{split}_{key}"] = value
    metrics["train_seconds"] = time.perf_counter() - started
    return student, metrics


def save_checkpoint(path: Path, model: Checkpointable, metrics: dict[str, Any],
                    data_cfg: Any, class_names: tuple[str, ...] = CLASS_NAMES) -> None:
    """`data_cfg`: the ShapeDataConfig or ImageFolderConfig the model trained on (recorded, so exports
    can calibrate and evaluate on the same data); `class_names`: label -> name, shipped with the model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state_dict": model.state_dict(),
            "config": model.config_dict(),
            "metrics": metrics,
            "data_config": asdict(data_cfg),
            "class_names": list(class_names),
        },
        path,
    )


def fit_to_data(cfg: TrainConfig, data: ShapeData) -> TrainConfig:
    """The architecture sized to the data: the input side and the number of classes."""
    teacher = replace(cfg.student.teacher, n_classes=len(data.class_names))
    return replace(cfg, student=replace(cfg.student, image_size=int(data.images.shape[-1]), teacher=teacher))


def load_teacher(path: Path) -> TeacherCNN:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    teacher = TeacherCNN.from_config(checkpoint["config"])
    teacher.load_state_dict(checkpoint["state_dict"])
    return teacher.eval()


def load_student(path: Path) -> tuple[EntropicStudent, dict[str, Any]]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    student = EntropicStudent(StudentConfig.from_dict(checkpoint["config"]))
    student.load_state_dict(checkpoint["state_dict"])
    return student.eval(), checkpoint


def choose_default(results: list[dict[str, Any]], teacher_accuracy: float) -> dict[str, Any]:
    """The lowest-rate student within 1 point of the teacher on validation, else the most accurate (of equally
    accurate ones, the lowest-rate: a tie on validation is no reason to send more bytes)."""
    close = [r for r in results if r["valid_accuracy"] >= teacher_accuracy - 0.01]
    if close:
        return min(close, key=lambda r: r["valid_estimated_bytes_per_image"])
    return max(results, key=lambda r: (r["valid_accuracy"], -r["valid_estimated_bytes_per_image"]))


def run(out: Path, data_cfg: Any, cfg: TrainConfig, log: bool = True) -> dict[str, Any]:
    """Teacher, then every beta; writes teacher.pt, student_beta<b>.pt and summary.json into `out`."""
    with single_thread():
        return _run(out, data_cfg, cfg, log)


def _run(out: Path, data_cfg: Any, cfg: TrainConfig, log: bool) -> dict[str, Any]:
    from models.splitcompute.user_data import describe, load_data

    started = time.perf_counter()
    data = load_data(data_cfg, progress=log)
    cfg = fit_to_data(cfg, data)
    if log:
        print(f"data: {describe(data)} ({time.perf_counter() - started:.0f} s)", flush=True)
    teacher, teacher_metrics = train_teacher(data, cfg)
    save_checkpoint(out / "teacher.pt", teacher, teacher_metrics, data_cfg, data.class_names)
    if log:
        print(f"teacher: {teacher_metrics} ({time.perf_counter() - started:.0f} s)", flush=True)
    teacher_logits = torch.from_numpy(predict_teacher(teacher, data.split("train")[0]))
    results = []
    for beta in cfg.betas:
        student, metrics = train_student(teacher, data, beta, cfg, teacher_logits)
        metrics["checkpoint"] = f"student_beta{beta:g}.pt"
        save_checkpoint(out / metrics["checkpoint"], student, metrics, data_cfg, data.class_names)
        results.append(metrics)
        if log:
            print(f"student: {metrics}", flush=True)
    summary = {
        "teacher": teacher_metrics,
        "students": results,
        "default": choose_default(results, teacher_metrics["valid_accuracy"])["checkpoint"],
        "train_config": {k: v for k, v in asdict(cfg).items() if k != "student"},
        "data_config": asdict(data_cfg),
        "class_names": list(data.class_names),
        "data": describe(data),
        "seconds": time.perf_counter() - started,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


QUICK_DATA = ShapeDataConfig(n_train=600, n_valid=200, n_test=200)
QUICK_TRAIN = TrainConfig(teacher_epochs=2, stage1_epochs=1, stage2_epochs=1, betas=(0.01, 0.16))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m models.splitcompute.train",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("artifacts/splitcompute"))
    parser.add_argument("--quick", action="store_true", help="tiny data and epochs (smoke runs)")
    parser.add_argument("--betas", type=float, nargs="+", help="override the beta sweep")
    parser.add_argument("--seed", type=int, default=0, help="training seed (initialisation and batch order)")
    own = parser.add_argument_group("your own images (models/splitcompute/user_data.py)")
    own.add_argument("--data", type=Path, default=None,
                     help="an image folder (one sub-folder per class, or train/ val/ test/ holding those)")
    own.add_argument("--image-size", type=int, default=96, help="the model's square input side (multiple of 8)")
    own.add_argument("--valid-share", type=float, default=0.15, help="per class, when the folder has no val/")
    own.add_argument("--test-share", type=float, default=0.15, help="per class, when the folder has no test/")
    own.add_argument("--epochs", type=int, default=None, help="teacher epochs (the student stages take half each)")
    own.add_argument("--repository", type=Path, default=None,
                     help="export the default student (splitcompute-encoder-fp32 + splitcompute-server-fp32) here")
    own.add_argument("--no-quantize", action="store_true",
                     help="export without the quantization gate (an unfinished run is still refused)")
    args = parser.parse_args(argv)
    command = "python -m models.splitcompute.train " + " ".join(argv if argv is not None else sys.argv[1:])
    data_cfg: Any
    data_cfg, cfg = (QUICK_DATA, QUICK_TRAIN) if args.quick else (ShapeDataConfig(), TrainConfig())
    if args.data is not None:
        from models.splitcompute.user_data import ImageFolderConfig

        data_cfg = ImageFolderConfig(str(args.data), args.image_size, args.valid_share, args.test_share)
    if args.betas:
        cfg = replace(cfg, betas=tuple(args.betas))
    if args.epochs:
        cfg = replace(cfg, teacher_epochs=args.epochs, stage1_epochs=max(1, args.epochs // 2),
                      stage2_epochs=max(1, args.epochs // 2))
    cfg = replace(cfg, seed=args.seed)
    try:
        summary = run(args.out, data_cfg, cfg)
    except ValueError as exc:  # the data's fault: one line, no traceback
        raise SystemExit(f"error: {exc}") from None
    if args.repository is not None:
        from exporters.splitcompute_user_quant import UnfinishedTraining
        from models.splitcompute.user_data import export_trained

        try:
            export_trained(args.out, args.repository, command, not args.no_quantize)
        except UnfinishedTraining as exc:
            raise SystemExit(f"error: {exc}") from None
        print(f"exported {summary['default']} into {args.repository}: make serve SERVE_REPOSITORY={args.repository}")
    return summary


if __name__ == "__main__":
    main()
