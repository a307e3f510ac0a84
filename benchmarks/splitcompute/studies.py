"""`python -m benchmarks.splitcompute.studies`: the long trainings behind reports/splitcompute.md.

Everything is cached under artifacts/splitcompute/studies/ (one checkpoint per job; a job whose
checkpoint exists is skipped), so a rerun only trains what is missing:
- the student beta sweep past the default build's betas, down to accuracies below every codec's;
- the teacher fine-tuned on JPEG/WebP-decoded inputs (the stronger input-compression baseline),
  and the same student recipe distilled from it;
- factorized-prior image autoencoders at a few lambdas (the learned input-compression baseline);
- the stage-1 ablation: distillation through the frozen tail, and a GDN encoder from scratch.

Reads the default build's teacher (artifacts/splitcompute/teacher.pt, written by
`python -m exporters.build --families splitcompute`). Runs on one torch thread; start it with
`nice -n 10` on a shared machine (`make splitcompute-studies` does). About 1.5 hours here with other
work on the 2 cores (image codec ~15 min per lambda, GDN ablation ~20 min, each student ~1-2 min).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from models.splitcompute.augment import AugmentConfig, finetune_with_codecs
from models.splitcompute.data import ShapeData, ShapeDataConfig, make_shape_data
from models.splitcompute.image_codec import ImageCodecConfig, checkpoint_name, train_image_codec
from models.splitcompute.student import StudentConfig
from models.splitcompute.train import (
    Checkpointable,
    TrainConfig,
    load_teacher,
    predict_teacher,
    save_checkpoint,
    single_thread,
    train_student,
)

SWEEP_BETAS = (0.5, 0.7, 1.0, 1.4, 2.0, 4.0)  # added to the default build's (0.01, 0.05, 0.25); >= 2 collapse
# The same student recipe distilled from the codec-augmented teacher (a better teacher: 96.7% vs 93.0% on test)
AUGMENTED_BETAS = (0.005, 0.02, 0.1, 0.25, 0.5, 0.7, 1.0, 1.4)
# image autoencoder (ImageCodecConfig's defaults otherwise): rate (bpp) + lambda * 255^2 * MSE
CODEC_LAMBDAS = (0.001, 0.004, 0.016, 0.064)
JOBS = ("sweep", "augmented", "sweep-augmented", "image-codec", "ablation")  # in the order they run
ABLATION_BETA = 0.25  # the stage-1 variants are compared at one beta
ABLATIONS: dict[str, TrainConfig] = {
    # name -> training config; "split-only" is the default build's stage 1 (its student_beta0.25.pt)
    "tail-distillation": TrainConfig(tail_distillation=True),
    "gdn-scratch": TrainConfig(stage1_epochs=6, tail_distillation=True, student=StudentConfig(encoder="gdn")),
}


def codec_study_config(lmbda: float) -> ImageCodecConfig:
    """The learned image codec the studies train (and the report reads) at `lmbda`."""
    return ImageCodecConfig(lmbda=lmbda)


def _job(path: Path, train: Callable[[], tuple[Checkpointable, dict]], data_cfg: ShapeDataConfig) -> None:
    if path.is_file():
        print(f"cached: {path}", flush=True)
        return
    started = time.perf_counter()
    model, metrics = train()
    metrics["train_seconds"] = time.perf_counter() - started
    save_checkpoint(path, model, metrics, data_cfg)
    print(f"{path.name}: {json.dumps(metrics)}", flush=True)


def run(artifacts: Path, only: set[str] | None = None, lambdas: tuple[float, ...] = CODEC_LAMBDAS) -> None:
    out = artifacts / "studies"
    summary = json.loads((artifacts / "summary.json").read_text())
    data_cfg = ShapeDataConfig(**summary["data_config"])
    data: ShapeData = make_shape_data(data_cfg)
    teacher = load_teacher(artifacts / "teacher.pt")
    logits = torch.from_numpy(predict_teacher(teacher, data.split("train")[0]))
    cfg = TrainConfig()
    wanted = only or set(JOBS)
    if "sweep" in wanted:
        for beta in SWEEP_BETAS:
            _job(out / f"student_beta{beta:g}.pt",
                 lambda b=beta: train_student(teacher, data, b, cfg, logits), data_cfg)  # type: ignore[misc]
    if "augmented" in wanted:
        _job(out / "teacher_augmented.pt", lambda: finetune_with_codecs(teacher, data, AugmentConfig()), data_cfg)
    if "sweep-augmented" in wanted:
        augmented = load_teacher(out / "teacher_augmented.pt")
        augmented_logits = torch.from_numpy(predict_teacher(augmented, data.split("train")[0]))
        for beta in AUGMENTED_BETAS:
            _job(out / f"student_augmented_beta{beta:g}.pt",
                 lambda b=beta: train_student(augmented, data, b, cfg, augmented_logits), data_cfg)  # type: ignore[misc]
    if "image-codec" in wanted:
        for lam in lambdas:
            codec_cfg = codec_study_config(lam)
            _job(out / checkpoint_name(codec_cfg),
                 lambda c=codec_cfg: train_image_codec(data, c), data_cfg)  # type: ignore[misc]
    if "ablation" in wanted:
        for name, variant in ABLATIONS.items():
            _job(out / f"student_{name}_beta{ABLATION_BETA:g}.pt",
                 lambda v=variant: train_student(teacher, data, ABLATION_BETA, v, logits), data_cfg)  # type: ignore[misc]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.splitcompute.studies",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts/splitcompute"))
    parser.add_argument("--only", nargs="+", choices=JOBS)
    parser.add_argument("--lambdas", nargs="+", type=float, choices=CODEC_LAMBDAS, default=CODEC_LAMBDAS,
                        help="the image codec's lambdas to train (a subset, to run two processes side by side)")
    args = parser.parse_args(argv)
    with single_thread():
        run(args.artifacts, set(args.only) if args.only else None, tuple(args.lambdas))


if __name__ == "__main__":
    main()
