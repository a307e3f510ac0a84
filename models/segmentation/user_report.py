"""The quality report of ECO-M2F trained on a user's labelled images (models/segmentation/user_data.py).

The figures are those of the answer the service gives: each test image goes through the service's own
resize (infersuite/services/segmentation/imaging.py: bilinear to the model's side), the gated model picks its encoder
depth, and the mask goes back to the image's own size by nearest before it is compared with the image's
own annotation (ignored pixels left out). Per class IoU, mean IoU over the classes present in the test
ground truth or predictions, pixel accuracy, and the compute the gate chose. Once the model is exported,
`add_gate_section` appends the quantization gate's verdicts (exporters/segmentation_user_quant.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from infersuite.services.segmentation.imaging import mask_to_size, to_model_input
from models.segmentation.eco_m2f import EcoM2F, gflops_at_exit, stage_gflops
from models.segmentation.metrics import IGNORE_LABEL, confusion, iou_per_class
from models.segmentation.user_data import (
    LabelMapConfig,
    data_config_from_dict,
    read_image,
    read_label_map,
    scan_label_maps,
)


def evaluate_test_split(model: EcoM2F, data_cfg: LabelMapConfig) -> dict[str, Any]:
    """The served pipeline (gate's depth) on every test image at its own size -> figures per class and overall."""
    scan = scan_label_maps(data_cfg)
    n_classes = model.config.n_classes
    matrix, layers, ignored = np.zeros((n_classes, n_classes), np.int64), [], 0
    for image_path, label_path in scan.pairs["test"]:
        image = read_image(image_path, data_cfg)
        labels = read_label_map(label_path, scan.classes, image.shape[:2], data_cfg)
        with torch.no_grad():
            logits, exits = model(torch.from_numpy(to_model_input(image, model.config.image_size)))
        mask = mask_to_size(logits[0].argmax(0).numpy().astype(np.uint8), *labels.shape)
        matrix += confusion(mask, labels, n_classes)
        layers.append(int(exits[0]))
        ignored += int((labels == IGNORE_LABEL).sum())
    counted = int(matrix.sum())
    costs = stage_gflops(model)
    iou = iou_per_class(matrix)
    return {"images": len(layers), "classes": list(scan.classes.names), "iou": [None if np.isnan(v) else float(v)
                                                                             for v in iou],
            "ground_truth_pixels": matrix.sum(1).tolist(), "miou": float(np.nanmean(iou)),
            "pixel_accuracy": float(np.trace(matrix) / max(counted, 1)), "labelled_pixels": counted,
            "ignored_pixels": ignored,
            "mean_layers": float(np.mean(layers)), "n_layers": model.config.n_layers,
            "mean_gflops": float(np.mean([gflops_at_exit(costs, k) for k in layers])),
            "gflops_full_depth": float(gflops_at_exit(costs, model.config.n_layers))}


def _percent(value: float | None) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{100 * value:.1f}"


def render_seeds(study: dict[str, Any]) -> list[str]:
    """The seed study's section (models.segmentation.train.seed_study)."""
    seeds = study["seeds"]
    depths = list(seeds[0]["fixed_miou"])
    lines = ["", f"## Training seeds ({len(seeds)}): the test split at the model's size", "",
             f"Every seed trains all three steps on the same data and splits (the first is the model exported; the "
             f"others are in seeds/); the gate is fitted at beta {study['beta']:g} with each. The equal-compute mix "
             "sends each image to one of the two fixed depths around the gate's mean depth at random, in the shares "
             "that match it (its expected mIoU, not one draw). Nothing is chosen on the test split.", "",
             "| seed | gate mIoU % | gate layers | equal-compute mix % | "
             + " | ".join(f"fixed {k} %" for k in depths) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(depths)]
    for row in seeds:
        lines.append(f"| {row['seed']} | {_percent(row['gate_miou'])} | {row['gate_layers']:.2f} | "
                     f"{_percent(row['mix_miou'])} | "
                     + " | ".join(_percent(row["fixed_miou"][k]) for k in depths) + " |")
    lines += ["", f"Test mIoU differences ({study['rule']}):", "",
              "| comparison | points | 95% interval | seeds x test images | verdict |", "|---|---:|---|---|---|"]
    for name, d in study["comparisons"].items():
        low, high = d["interval_95"]
        lines.append(f"| {name} | {100 * d['estimate']:+.2f} | [{100 * low:+.2f}, {100 * high:+.2f}] | "
                     f"{d['seeds']} x {d['images']} | {d['verdict']} |")
    return lines


def render(report: dict[str, Any], checkpoint: dict[str, Any], data: dict[str, Any],
           seeds: dict[str, Any] | None = None) -> str:
    """The Markdown report."""
    train_pixels = checkpoint["metrics"].get("train_pixels_per_class", [])
    lines = [
        "# ECO-M2F on your labelled images", "",
        f"Data: `{data['path']}` (format {data['format']}, ignore index {checkpoint.get('ignore_index')} in the "
        f"annotation files), model input {data['image_size']} px, {len(report['classes'])} classes, "
        f"{report['n_layers']} encoder layers, gate beta {checkpoint['beta']:g}. "
        f"{checkpoint['metrics'].get('data', '')}",
        "",
        f"## Test split ({report['images']} images) at each image's own size",
        "",
        "The served answer: the service's bilinear resize to the model's side, the gate's depth, the mask "
        "back to the image's size by nearest, compared with the image's own annotation "
        f"({report['labelled_pixels']:,} labelled pixels; {report['ignored_pixels']:,} ignored pixels left out).",
        "",
        f"- mean IoU: **{_percent(report['miou'])}%** (over the classes in the test ground truth or predictions)",
        f"- pixel accuracy: {_percent(report['pixel_accuracy'])}%",
        f"- compute the gate chose: {report['mean_layers']:.2f} of {report['n_layers']} encoder layers on "
        f"average, {report['mean_gflops']:.4f} GFLOPs per image ({report['gflops_full_depth']:.4f} at full depth)",
        "",
        "| class | IoU % | test pixels | training pixels (model size) |",
        "|---|---:|---:|---:|",
    ]
    for k, name in enumerate(report["classes"]):
        train = f"{train_pixels[k]:,}" if k < len(train_pixels) else ""
        lines.append(f"| {name} | {_percent(report['iou'][k])} | {report['ground_truth_pixels'][k]:,} | {train} |")
    lines += ["", "## Test split at the model's size, per exit policy (quality.json)", "",
              "| policy | mIoU % | mean encoder layers | GFLOPs per image |", "|---|---:|---:|---:|"]
    lines += [f"| {row['policy']} | {_percent(row['miou'])} | {row['mean_layers']:.2f} | {row['gflops']:.4f} |"
              for row in checkpoint["metrics"]["test"]]
    if seeds is not None:
        lines += render_seeds(seeds)
    lines += ["", f"Reproduce: `python -m models.segmentation.train --data {data['path']} --format {data['format']} "
              f"--image-size {data['image_size']}" + (f" --seeds {len(seeds['seeds'])}" if seeds else "") + "`.", ""]
    return "\n".join(lines)


def write_report(model: EcoM2F, checkpoint_path: Path, out: Path,
                 seeds: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluates the checkpoint's test split; writes `out` (Markdown, with the seed study's section when `seeds`)
    and its figures next to it (<name>.figures.json; quality.json beside it is the training's own)."""
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    data_cfg = data_config_from_dict(checkpoint["scene_config"])
    if not isinstance(data_cfg, LabelMapConfig):
        raise TypeError(f"{checkpoint_path} was trained on the synthetic scenes, not on a user's images")
    report = evaluate_test_split(model, data_cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(report, checkpoint, checkpoint["scene_config"], seeds))
    out.with_suffix(".figures.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


GATE_HEADING = "\n## Quantization gate\n"


def add_gate_section(report_path: Path, section: str, gate: dict[str, Any] | None) -> None:
    """Puts the quantization gate's section (`exporters.segmentation_user_quant.render_gate`) at the end of the
    report, in place of an earlier one, and its result into <name>.figures.json as "quantization_gate"
    (null when not run)."""
    text = report_path.read_text() if report_path.is_file() else ""
    if GATE_HEADING in text:
        text = text[:text.index(GATE_HEADING)]
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(text.rstrip("\n") + "\n" + section)
    figures_path = report_path.with_suffix(".figures.json")
    figures = json.loads(figures_path.read_text()) if figures_path.is_file() else {}
    figures["quantization_gate"] = gate
    figures_path.write_text(json.dumps(figures, indent=2) + "\n")
