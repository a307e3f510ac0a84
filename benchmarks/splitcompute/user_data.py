"""The Entropic Student on your own images: train (teacher + beta sweep) per seed, then the rate-accuracy
curve on your test split against JPEG and WebP fed to the same teacher, with intervals over training
seeds and test images.

    python -m benchmarks.splitcompute.user_data --data my_images --out artifacts/sc-mine --report mine.md
    make train-splitcompute DATA=my_images [USER_REPOSITORY=dir]     # + exports the first seed's default

The claim tested, selected on validation only: the default student (the lowest-rate beta within a point
of its teacher on validation) against, for each input codec, the smallest setting whose validation
accuracy through the teacher reaches the student's. On the test split, per image and per training
seed: bytes the codec needs minus the student's (with headers: the student's 17-byte frame vs the whole
file; and without), and the student's correctness minus the codec's. Intervals: hierarchical bootstrap
over seeds x test images (models/statistics.py). The whole curves and BD-rates per seed are descriptive.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.splitcompute.bdrate import bd_rate
from benchmarks.splitcompute.rates import Coded, coded_images, student_per_image, teacher_correct
from infersuite.services.splitcompute import wire
from models.splitcompute.data import ShapeData
from models.splitcompute.train import (
    TrainConfig,
    load_student,
    load_teacher,
    run,
    single_thread,
)
from models.splitcompute.user_data import DIGITS_SOURCE, ImageFolderConfig, describe, load_image_folder
from models.statistics import hierarchical_bootstrap, rule

CODECS: dict[str, tuple[str, dict[str, Any], tuple[int | None, ...]]] = {
    "JPEG 4:2:0": ("JPEG", {"optimize": True, "subsampling": 2}, (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)),
    "JPEG 4:4:4": ("JPEG", {"optimize": True, "subsampling": 0}, (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)),
    "WebP": ("WEBP", {"method": 4}, (0, 5, 10, 20, 30, 50, 70, 90, 100, None)),
}


@dataclass
class PerImage:
    """One curve point on one split: per-image bytes (full, payload) and per-image correctness."""

    method: str
    setting: str
    full: np.ndarray
    payload: np.ndarray
    correct: np.ndarray

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean())


def student_points(path: Path, images: np.ndarray, labels: np.ndarray) -> PerImage:
    """The checkpoint's student, each image range-coded on its own (rates.student_per_image)."""
    student, ckpt = load_student(path)
    body, _, correct = student_per_image(student, images, labels)
    return PerImage("student", f"beta={ckpt['metrics']['beta']:g}", body + wire.HEADER_BYTES, body, correct)


def match_on_validation(student_valid: PerImage, codec_valid: list[PerImage]) -> int:
    """Index of the codec setting with the fewest validation bytes whose validation accuracy reaches the
    student's; the most accurate setting when none does."""
    reaching = [i for i, p in enumerate(codec_valid) if p.accuracy >= student_valid.accuracy]
    if reaching:
        return min(reaching, key=lambda i: codec_valid[i].full.mean())
    return max(range(len(codec_valid)), key=lambda i: codec_valid[i].accuracy)


def evaluate_seed(out: Path, summary: dict[str, Any], data: ShapeData,
                  decoded: dict[str, list[Coded]]) -> dict[str, Any]:
    """Every curve point on valid and test for one trained seed; the validation-matched settings."""
    teacher = load_teacher(out / "teacher.pt")
    points: dict[str, dict[str, list[PerImage]]] = {"valid": {}, "test": {}}
    for split in ("valid", "test"):
        images, labels = data.split(split)
        points[split]["student"] = [student_points(out / s["checkpoint"], images, labels)
                                    for s in summary["students"]]
        for c in decoded[split]:
            points[split].setdefault(c.codec, []).append(
                PerImage(c.codec, c.setting, c.full, c.payload, teacher_correct(teacher, c.decoded, labels)))
    default = next(i for i, s in enumerate(summary["students"]) if s["checkpoint"] == summary["default"])
    matched = {name: match_on_validation(points["valid"]["student"][default], points["valid"][name]) for name in CODECS}
    return {"points": points, "default": default, "matched": matched,
            "teacher_test_accuracy": float(teacher_correct(teacher, *data.split("test")).mean())}


def _curve(points: list[PerImage], measure: str) -> tuple[list[float], list[float]]:
    return [float(getattr(p, measure).mean()) for p in points], [p.accuracy for p in points]


def _bd(reference: list[PerImage], tested: list[PerImage], measure: str) -> float | None:
    """BD-rate, None where the curves share no accuracy range or one has fewer than two efficient points."""
    try:
        value = bd_rate(_curve(reference, measure), _curve(tested, measure))
    except ValueError:
        return None
    return None if value is None else value.value


def compare(seeds: list[dict[str, Any]], resamples: int) -> dict[str, Any]:
    """Per codec: the paired differences over seeds x test images, their intervals, and BD-rates per seed."""
    result: dict[str, Any] = {}
    for name in CODECS:
        rows: dict[str, list[np.ndarray]] = {"full": [], "payload": [], "correct": []}
        settings: list[str] = []
        bd: dict[str, list[float | None]] = {"full": [], "payload": []}
        for seed in seeds:
            test = seed["points"]["test"]
            student, codec = test["student"][seed["default"]], test[name][seed["matched"][name]]
            settings.append(codec.setting)
            rows["full"].append(codec.full - student.full)
            rows["payload"].append(codec.payload - student.payload)
            rows["correct"].append(student.correct - codec.correct)
            for measure in ("full", "payload"):
                bd[measure].append(_bd(test[name], test["student"], measure))
        result[name] = {
            "matched_settings": settings,
            "bytes_saved_full": hierarchical_bootstrap(np.stack(rows["full"]), resamples=resamples),
            "bytes_saved_payload": hierarchical_bootstrap(np.stack(rows["payload"]), resamples=resamples),
            "accuracy_difference": hierarchical_bootstrap(np.stack(rows["correct"]), resamples=resamples),
            "bd_rate": bd,
        }
    return result


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


def write_report(path: Path, command: str, data: ShapeData, summaries: list[dict[str, Any]],
                 seeds: list[dict[str, Any]], comparison: dict[str, Any], seconds: float, resamples: int,
                 source: str | None = None) -> None:
    first = seeds[0]["points"]["test"]
    lines = [
        "# Split computing on your images: the Entropic Student against JPEG and WebP",
        "",
        f"Produced by `{command}` ({seconds:.0f} s wall). Data: {describe(data)}; images fitted to "
        f"{data.images.shape[-1]} px (infersuite/services/splitcompute/imaging.py: RGB, shorter side to the size, "
        "centre crop). "
        f"Training seeds: {len(seeds)} (same split; the split is drawn once)."
        + (f" Source of the images: {source}." if source else ""),
        "",
        "| seed | teacher test accuracy | default student (chosen on validation) | its test accuracy | "
        "its mean bytes sent (frame) |",
        "|---|---|---|---|---|",
    ]
    for i, (summary, seed) in enumerate(zip(summaries, seeds, strict=True)):
        student = seed["points"]["test"]["student"][seed["default"]]
        lines.append(f"| {i} | {seed['teacher_test_accuracy']:.3f} | {summary['default']} | {student.accuracy:.3f} | "
                     f"{student.full.mean():.1f} |")
    lines += ["", "## The claim: fewer bytes at the accuracy JPEG/WebP need (selected on validation)", "",
              "For each codec, the setting with the fewest validation bytes whose validation accuracy through the "
              "teacher reaches the default student's. Test split, per image, paired per seed: bytes saved = the "
              "codec's bytes minus the student's (> 0: the student sends less); accuracy difference = the student's "
              f"correctness minus the codec's. Rule: {rule(resamples)}.", "",
              "| codec | matched setting per seed | bytes saved, with headers | bytes saved, payload only | "
              "accuracy difference |", "|---|---|---|---|---|"]
    for name, c in comparison.items():
        lines.append(f"| {name} | {', '.join(c['matched_settings'])} | {_interval(c['bytes_saved_full'])} | "
                     f"{_interval(c['bytes_saved_payload'])} | {_interval(c['accuracy_difference'], 4)} |")
    lines += ["", "BD-rate of the student's curve against each codec's on the test split (descriptive: whole curves, "
              "per seed; negative = fewer bytes at equal accuracy; n/a: no common accuracy range, or a curve "
              "with fewer than two efficient points):", "",
              "| codec | with headers, per seed | payload only, per seed |", "|---|---|---|"]
    for name, c in comparison.items():
        lines.append(f"| {name} | {', '.join(_pct(v) for v in c['bd_rate']['full'])} | "
                     f"{', '.join(_pct(v) for v in c['bd_rate']['payload'])} |")
    lines += ["", "## Whole curves, seed 0, test split", "",
              "| curve | setting | accuracy | bytes sent | payload bytes |", "|---|---|---|---|---|"]
    for name in ("student", *CODECS):
        for p in first[name]:
            lines.append(f"| {name} | {p.setting} | {p.accuracy:.3f} | {p.full.mean():.1f} | {p.payload.mean():.1f} |")
    lines += ["", "Student bytes are range-coded frames of each image alone (batch 1), decoded and checked equal "
              "to the symbols before classification; codec bytes are Pillow's files (payload: the JPEG scan / WebP "
              "bitstream), decoded and classified by the same seed's teacher.", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def _interval(interval: Any, digits: int = 1) -> str:
    return (f"{interval.estimate:+.{digits}f} [{interval.low:+.{digits}f}, {interval.high:+.{digits}f}] "
            f"({interval.seeds} x {interval.units}): {interval.verdict}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.splitcompute.user_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the image folder (models/splitcompute/user_data.py)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoints: OUT/seed<N>/")
    parser.add_argument("--report", type=Path, required=True, help="the Markdown report (+ .json beside it)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds (3 for intervals that mean something)")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--valid-share", type=float, default=0.15)
    parser.add_argument("--test-share", type=float, default=0.15)
    parser.add_argument("--teacher-epochs", type=int, default=TrainConfig.teacher_epochs)
    parser.add_argument("--student-epochs", type=int, default=TrainConfig.stage1_epochs, help="per stage")
    parser.add_argument("--betas", type=float, nargs="+", default=None)
    parser.add_argument("--resamples", type=int, default=5000)
    parser.add_argument("--repository", type=Path, default=None, help="export seed 0's default student here")
    parser.add_argument("--no-quantize", action="store_true",
                        help="export without the quantization gate (an unfinished run is still refused)")
    parser.add_argument("--source", default=None, help="where the images come from and their licence (the report "
                                                       "states it); --source digits: scikit-learn's digits")
    args = parser.parse_args(argv)
    if args.source == "digits":
        args.source = DIGITS_SOURCE
    command = "python -m benchmarks.splitcompute.user_data " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    data_cfg = ImageFolderConfig(str(args.data), args.image_size, args.valid_share, args.test_share)
    try:
        data = load_image_folder(data_cfg, progress=True)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    cfg = replace(TrainConfig(), teacher_epochs=args.teacher_epochs, stage1_epochs=args.student_epochs,
                  stage2_epochs=args.student_epochs)
    if args.betas:
        cfg = replace(cfg, betas=tuple(args.betas))
    summaries, seeds = [], []
    decoded = {split: coded_images(data.split(split)[0], CODECS) for split in ("valid", "test")}
    for seed in range(args.seeds):
        out = args.out / f"seed{seed}"
        summaries.append(run(out, data_cfg, replace(cfg, seed=seed)))
        with single_thread():
            seeds.append(evaluate_seed(out, summaries[-1], data, decoded))
    comparison = compare(seeds, args.resamples)
    write_report(args.report, command, data, summaries, seeds, comparison, time.perf_counter() - started,
                 args.resamples, args.source)
    figures = {"command": command, "data": describe(data), "class_names": list(data.class_names),
               "summaries": summaries,
               "comparison": {name: {k: (asdict(v) if hasattr(v, "estimate") else v) for k, v in c.items()}
                              for name, c in comparison.items()}}
    args.report.with_suffix(".json").write_text(json.dumps(figures, indent=1, default=str) + "\n")
    print(f"wrote {args.report}")
    if args.repository is not None:
        from exporters.splitcompute_user_quant import UnfinishedTraining
        from models.splitcompute.user_data import export_trained

        try:
            exported = export_trained(args.out / "seed0", args.repository, command, not args.no_quantize, args.report)
        except UnfinishedTraining as exc:
            raise SystemExit(f"error: {exc}") from None
        figures["quantization_gate"] = exported["quantization_gate"]
        args.report.with_suffix(".json").write_text(json.dumps(figures, indent=1, default=str) + "\n")
        print(f"exported seed 0's default student into {args.repository}: "
              f"make serve SERVE_REPOSITORY={args.repository}")
    return figures


if __name__ == "__main__":
    main()
