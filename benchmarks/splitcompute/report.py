"""`python -m benchmarks.splitcompute.report`: the splitcompute rate-accuracy and latency report.

Reads the trained teacher and the default beta sweep (artifacts/splitcompute, written by
`python -m exporters.build --families splitcompute`), the long studies when present
(artifacts/splitcompute/studies, written by `make splitcompute-studies`: more betas, the
codec-augmented teacher, the learned image codec, the stage-1 ablation) and the exported default
graphs in the model repository; writes reports/splitcompute.md and
reports/splitcompute_rate_accuracy.png. Every figure comes from this one run on the held-out test
split; nothing is chosen on it (the served student is chosen on validation by the build, the
betas, qualities, steps and lambdas and the matched accuracies are fixed in the code).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.splitcompute.baselines import feature_points, image_codec_points
from benchmarks.splitcompute.compare import STUDENT, STUDENT_AUGMENTED, Comparison, compare
from benchmarks.splitcompute.latency import measure_latency
from benchmarks.splitcompute.rates import INPUT_CODECS, RatePoint, codec_points, student_point, teacher_accuracy
from benchmarks.splitcompute.render import (
    ablation_table,
    bd_table,
    curve_table,
    goal_lines,
    latency_lines,
    plot,
    rate_gap_lines,
    ratio_table,
    without_curve,
)
from benchmarks.splitcompute.studies import ABLATION_BETA, ABLATIONS, CODEC_LAMBDAS, codec_study_config
from exporters.onnx_export import export_onnx
from models.splitcompute.data import ShapeDataConfig, make_shape_data
from models.splitcompute.image_codec import checkpoint_name, load_image_codec
from models.splitcompute.teacher import TeacherCNN
from models.splitcompute.train import TrainConfig, load_student, load_teacher

AUGMENTED = "codec-augmented teacher"


def student_checkpoints(artifacts: Path) -> list[tuple[float, Path, dict[str, Any]]]:
    """(beta, checkpoint, training metrics) of the default build's betas and the studies' sweep, by beta."""
    summary = json.loads((artifacts / "summary.json").read_text())
    found = {s["beta"]: (artifacts / s["checkpoint"], s) for s in summary["students"]}
    for path in sorted((artifacts / "studies").glob("student_beta*.pt")):
        metrics = torch.load(path, map_location="cpu", weights_only=True)["metrics"]
        found.setdefault(metrics["beta"], (path, metrics))
    return [(beta, *found[beta]) for beta in sorted(found)]


def ablation_rows(artifacts: Path, images: np.ndarray, labels: np.ndarray) -> list[dict[str, Any]]:
    """The default stage 1 (split point only, teacher-initialised stem) beside the studies' variants."""
    variants = [("split point only", TrainConfig(), artifacts / f"student_beta{ABLATION_BETA:g}.pt")]
    for name, cfg in ABLATIONS.items():
        stage1 = "split point + frozen tail layers" if cfg.tail_distillation else "split point only"
        variants.append((stage1, cfg, artifacts / "studies" / f"student_{name}_beta{ABLATION_BETA:g}.pt"))
    rows = []
    for stage1, cfg, path in variants:
        if not path.is_file():
            continue
        student, checkpoint = load_student(path)
        encoder = ("GDN, from scratch" if student.config.encoder == "gdn"
                   else "teacher stem (initialised from the teacher) + projection")
        rows.append({"stage1": stage1, "encoder": encoder, "epochs": cfg.stage1_epochs,
                     "valid_accuracy": checkpoint["metrics"]["valid_accuracy"],
                     "train_seconds": checkpoint["metrics"]["train_seconds"],
                     "point": student_point(student, ABLATION_BETA, images, labels)})
    return rows


def image_codec_checkpoints(artifacts: Path) -> list[Path]:
    """The studies' learned image codecs of the current configuration (`codec_study_config`); a cached
    checkpoint of another configuration has another name (`checkpoint_name`) and is not read."""
    paths = [artifacts / "studies" / checkpoint_name(codec_study_config(lam)) for lam in CODEC_LAMBDAS]
    return [p for p in paths if p.is_file()]


def codec_training_line() -> str:
    """How the report's learned image codec is configured and trained, from the one config it uses."""
    cfg = codec_study_config(CODEC_LAMBDAS[0])
    side = 96 // 2**cfg.downsamplings
    return (f"{cfg.downsamplings} stride-2 downsamplings ({side}x{side}x{cfg.latent_channels} latent at 96 px), "
            f"{cfg.channels} channels, {cfg.epochs} epochs per lambda on one CPU thread")


def measure_points(artifacts: Path, data: Any, teachers: dict[str, TeacherCNN]) -> list[RatePoint]:
    images, labels = data.split("test")
    students = [student_point(load_student(path)[0], beta, images, labels)
                for beta, path, _ in student_checkpoints(artifacts)]
    for path in (artifacts / "studies").glob("student_augmented_beta*.pt"):
        student, checkpoint = load_student(path)
        point = student_point(student, checkpoint["metrics"]["beta"], images, labels)
        students.append(replace(point, method=STUDENT_AUGMENTED))
    checkpoints = {p: torch.load(p, map_location="cpu", weights_only=True) for p in image_codec_checkpoints(artifacts)}
    codecs = {float(c["config"]["lmbda"]): load_image_codec(p) for p, c in checkpoints.items()}
    psnr = {f"lambda={c['config']['lmbda']:g}": c["metrics"]["valid_psnr_db"] for c in checkpoints.values()}
    learned = [replace(p, setting=f"{p.setting} (valid PSNR {psnr[p.setting]:.1f} dB)")
               for p in image_codec_points(codecs, teachers, images, labels)]
    return (sorted(students, key=lambda p: (p.method, p.bytes_full)) + codec_points(teachers, images, labels)
            + feature_points(teachers["teacher"], data.split("valid")[0], images, labels) + learned)


def render(points: list[RatePoint], comparisons: dict[str, list[Comparison]], ablation: list[dict[str, Any]],
           context: dict[str, Any]) -> str:
    teachers = context["teacher_accuracy"]
    lines = [
        "# splitcompute: Entropic Student rate-accuracy and latency", "",
        f"Generated by `{context['command']}` in {context['seconds']:.0f} s. Held-out test split of the procedural "
        f"texture data ({context['n_test']} images, 96x96, 10 classes), batch 1 coding. Training: "
        "`python -m exporters.build --families splitcompute` (teacher and betas 0.01, 0.05, 0.25) and "
        "`make splitcompute-studies` (the other betas, the codec-augmented teacher, the learned image codec, the "
        "stage-1 ablation); missing studies are left out of this report.", "",
        *([f"Re-rendered from its .json by `{context['rerendered_by']}`: nothing was retrained or re-measured; the "
           "BD-rates, goals and readings are recomputed from the run's curve points.", ""]
          if context.get("rerendered_by") else []),
        "## Goals (BD-rate of the student vs the baseline)", "",
        *goal_lines(comparisons, points), "",
        "## Rate-accuracy curves", "",
        "Teachers on uncompressed input: " + ", ".join(f"{k} **{100 * v:.1f}%**" for k, v in teachers.items()) + ".",
        "", f"![rate-accuracy]({context['png']})", ""]
    lines += curve_table(points)
    lines += ["", "Student bytes sent = the wire frame (17-byte header: format, codec version, latent shape, CRC-32 + "
              "range-coded body); without headers = the body. JPEG (Pillow, optimized Huffman tables; 4:2:0 = "
              "`subsampling=2`, 4:4:4 = `subsampling=0`) without headers = the entropy-coded scan; WebP (method 6; "
              "lossless = `lossless=True`) = the VP8/VP8L chunk payload; PNG = the IDAT payload. The feature and "
              "learned-codec baselines send the student's 17-byte frame header too. The codec-augmented teacher is "
              "the teacher fine-tuned on JPEG 4:2:0 / 4:4:4 / WebP-decoded images at random qualities "
              "(models/splitcompute/augment.py). The learned image codec (models/splitcompute/image_codec.py) is "
              f"trained for MSE only, {codec_training_line()}; a codec that does not keep the class "
              "gratings leaves the teacher at chance, whatever its rate.", ""]
    lines += ["## BD-rate of the student vs each baseline", "",
              "Bjontegaard delta rate with accuracy in place of PSNR: log(bytes) as a function of test accuracy on "
              "each curve's efficient frontier, fitted by a piecewise-cubic Hermite interpolant (PCHIP), the "
              "difference integrated over the accuracy range both curves cover (stated per row) and averaged; "
              "-90% = 10x fewer bytes on average over that range. Curves need two efficient points (PNG, a single "
              "lossless point, is in the curve table only). \"best input codec\" is the efficient frontier of "
              "every JPEG/WebP/PNG setting with either teacher (the strongest input-compression baseline).", ""]
    for student, rows in comparisons.items():
        lines += ["", f"### {student.replace(STUDENT, 'Entropic Student', 1)}", "", *bd_table(rows)]
    if comparisons:
        lines += ["", without_curve(points, next(iter(comparisons.values())))]
    lines += ["", "## Byte ratio at matched accuracy", "",
              "Baseline bytes / student bytes at fixed test accuracies, both interpolated on their curves in log-rate "
              "(bytes sent / no headers); n/a where a curve does not reach the accuracy.", ""]
    for student, rows in comparisons.items():
        lines += ["", f"### {student.replace(STUDENT, 'Entropic Student', 1)}", "", *ratio_table(rows)]
    lines += ["", f"## Stage-1 ablation (beta = {ABLATION_BETA:g})", "",
              "Stage 2 (decoder + tail on the quantized latent, KD + CE) is the same for all rows. The paper's "
              "configuration distils the split point and every teacher layer after it through the frozen tail, "
              "with a GDN encoder trained from scratch.", ""]
    lines += ablation_table(ablation) if ablation else ["(no ablation checkpoints: run `make splitcompute-studies`)"]
    lines += ["", *rate_gap_lines([p for p in points if p.method.startswith(STUDENT)])]
    lines += latency_lines(context["latency"], context["served"])
    return "\n".join(lines)


def jpeg_for_latency(points: list[RatePoint], accuracy: float) -> RatePoint:
    """The smallest JPEG (either subsampling) whose teacher reaches `accuracy`, else the most accurate one."""
    jpegs = [p for p in points if p.method.startswith("JPEG") and p.method.endswith("-> teacher")]
    reaching = [p for p in jpegs if p.accuracy >= accuracy]
    return (min(reaching, key=lambda p: p.bytes_full) if reaching
            else max(jpegs, key=lambda p: (p.accuracy, -p.bytes_full)))


def load_teachers(artifacts: Path) -> dict[str, TeacherCNN]:
    teachers = {"teacher": load_teacher(artifacts / "teacher.pt")}
    if (artifacts / "studies" / "teacher_augmented.pt").is_file():
        teachers[AUGMENTED] = load_teacher(artifacts / "studies" / "teacher_augmented.pt")
    return teachers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.splitcompute.report",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts/splitcompute"))
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--out", type=Path, default=Path("reports/splitcompute.md"))
    parser.add_argument("--latency-images", type=int, default=100)
    parser.add_argument("--rerender", type=Path, metavar="JSON",
                        help="rewrite --out from a run's .json: no model is loaded, nothing is measured")
    args = parser.parse_args(argv)
    if args.rerender is not None:
        command = "python -m benchmarks.splitcompute.report " + shlex.join(sys.argv[1:] if argv is None else argv)
        print(rerender(args.rerender, args.out, command.strip()))
        return
    started = time.perf_counter()
    torch.set_num_threads(1)  # see models.splitcompute.train.single_thread: faster on the shared cores
    summary = json.loads((args.artifacts / "summary.json").read_text())
    default_beta = next(s["beta"] for s in summary["students"] if s["checkpoint"] == summary["default"])
    data = make_shape_data(ShapeDataConfig(**summary["data_config"]))
    images, labels = data.split("test")
    teachers = load_teachers(args.artifacts)
    points = measure_points(args.artifacts, data, teachers)
    comparisons = {name: rows for name in (STUDENT, STUDENT_AUGMENTED) if (rows := compare(points, name))}
    ablation = ablation_rows(args.artifacts, images, labels)
    served = next(p for p in points if p.method == STUDENT and p.setting == f"beta={default_beta:g}")
    jpeg = jpeg_for_latency(points, served.accuracy)
    options = {**INPUT_CODECS[jpeg.method.split(" -> ")[0]][1], "quality": int(jpeg.setting[2:])}
    with tempfile.TemporaryDirectory() as tmp:
        teacher_onnx = export_onnx(teachers["teacher"], Path(tmp) / "teacher.onnx")
        latency = measure_latency(args.repository, teacher_onnx, images[:args.latency_images], options)
    latency["jpeg_setting"] = f"{jpeg.method.split(' -> ')[0]} {jpeg.setting}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = args.out.with_name(args.out.stem + "_rate_accuracy.png")
    plot(points, teacher_accuracy(teachers["teacher"], images, labels), png)
    command = "python -m benchmarks.splitcompute.report " + shlex.join(sys.argv[1:] if argv is None else argv)
    context = {"command": command.strip(), "seconds": time.perf_counter() - started, "n_test": len(labels),
               "png": png.name, "latency": latency, "served": served,
               "teacher_accuracy": {k: teacher_accuracy(t, images, labels) for k, t in teachers.items()}}
    text = render(points, comparisons, ablation, context)
    args.out.write_text(text)
    write_json(args.out.with_suffix(".json"), points, comparisons, ablation, context)
    print(text)


def write_json(path: Path, points: list[RatePoint], comparisons: dict[str, list[Comparison]],
               ablation: list[dict[str, Any]], context: dict[str, Any]) -> None:
    """Everything `rerender` needs to write the report again without a model."""
    report = {"command": context["command"], "seconds": context["seconds"], "n_test": context["n_test"],
              "png": context["png"], **({"rerendered_by": context["rerendered_by"]} if "rerendered_by" in context
                                        else {})}
    path.write_text(json.dumps(
        {"teacher_accuracy": context["teacher_accuracy"], "points": [asdict(p) for p in points],
         "comparisons": {k: [asdict(c) for c in v] for k, v in comparisons.items()}, "latency": context["latency"],
         "ablation": [{**r, "point": asdict(r["point"])} for r in ablation], "served": asdict(context["served"]),
         "report": report}, indent=2, default=str) + "\n")


def _legacy_ablation(text: str) -> list[dict[str, Any]]:
    """The stage-1 ablation rows of a report whose .json predates "ablation" (read from its own table)."""
    section = text.split(f"## Stage-1 ablation (beta = {ABLATION_BETA:g})", 1)[-1]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 7 or not cells[2].isdigit():
            continue
        point = RatePoint(STUDENT, f"beta={ABLATION_BETA:g}", float(cells[4].rstrip("%")) / 100, float(cells[5]),
                          None)  # type: ignore[arg-type]  # not in the table: only bytes sent
        rows.append({"stage1": cells[0], "encoder": cells[1], "epochs": int(cells[2]),
                     "valid_accuracy": float(cells[3].rstrip("%")) / 100, "train_seconds": float(cells[6]),
                     "point": point})
    return rows


def rerender(source: Path, out: Path, command: str) -> str:
    """The report of an earlier run from its .json: today's comparisons, goals and tables over the run's
    points, nothing re-measured. Older .json files lack the ablation rows, the served point and the run's
    command: those are read once from the report they were written with and kept in the .json from then on."""
    run = json.loads(source.read_text())
    old_text = out.read_text() if out.is_file() else ""
    points = [RatePoint(**p) for p in run["points"]]
    meta = run.get("report") or {}
    if not meta:
        found = re.search(r"^Generated by `([^`]+)` in ([0-9.]+) s\. Held-out test split of the procedural texture "
                          r"data \(([0-9]+) images", old_text, re.M)
        if found is None:
            raise ValueError(f"{source} has no 'report' entry and {out} does not name the run's command")
        meta = {"command": found.group(1), "seconds": float(found.group(2)), "n_test": int(found.group(3)),
                "png": out.stem + "_rate_accuracy.png"}
    if "served" in run:
        served = RatePoint(**run["served"])
    else:
        named = re.search(r"^Served student \(.*?\): (beta=[0-9.]+),", old_text, re.M)
        if named is None:
            raise ValueError(f"{out} does not name its served student")
        setting = named.group(1)
        served = next(p for p in points if p.method == STUDENT and p.setting == setting)
    ablation = ([{**r, "point": RatePoint(**r["point"])} for r in run["ablation"]] if "ablation" in run
                else _legacy_ablation(old_text))
    comparisons = {name: rows for name in (STUDENT, STUDENT_AUGMENTED) if (rows := compare(points, name))}
    context = {**meta, "latency": run["latency"], "served": served, "teacher_accuracy": run["teacher_accuracy"],
               "rerendered_by": command}
    text = render(points, comparisons, ablation, context)
    out.write_text(text)
    write_json(source, points, comparisons, ablation, context)
    return text


if __name__ == "__main__":
    main()
