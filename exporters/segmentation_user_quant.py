"""The quantization gate on an ECO-M2F trained on a user's own labelled images (models/segmentation/user_data.py).

The same recipes, gate and default rule as `make quantize-report` runs on the default segmentation family
(exporters/quantize/report.py: `run_recipe`, `measure_latency`, `gate`, `default_recipe`; the staged family of
exporters/family_quant.py: each stage quantized on the inputs the fp32 pipeline feeds it), with the user's
data in place of the synthetic scenes:

- calibration: the user's VALIDATION images, through the service's resize (bilinear to the model's side),
  run through the fp32 stages at full depth so every stage is calibrated on what feeds it when served;
- quality: the staged pipeline (the gate's depth) on every image of the user's TEST split, each mask brought
  back to the image's own size by nearest and compared with its own annotation, the ignore index left out:
  dataset mIoU, the figure of the run's quality report (models/segmentation/user_report.py).

Unlike the default world's report, a recipe that fails the gate (or that its toolchain refuses) is not written
into the repository at all: the run's quality report says why. Every stage written gets meta.json through
`write_variant` (the backbone's with the pipeline naming the recipe's own stages) and a manifest.json as
`exporters.ship` records it; the fp32 backbone's meta.json carries every recipe's verdict. A checkpoint whose
training did not run to its end is refused before anything is exported.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from exporters import segmentation as seg_export
from exporters.family_quant import CALIBRATION_BATCH, SegmentationQuantization
from exporters.quantize.recipes import RECIPES
from exporters.quantize.report import (
    MIN_DEFAULT_SPEEDUP,
    TENSORRT_PRECISION,
    default_recipe,
    gate,
    measure_latency,
    run_recipe,
)
from exporters.quantize.schemes import CALIBRATION_BATCHES
from exporters.repository import checked_meta, record_quantization_gate, set_default_alias, write_variant
from exporters.ship import write_manifests
from infersuite.services.segmentation.imaging import mask_to_size, to_model_input
from models.segmentation.metrics import confusion, iou_per_class
from models.segmentation.user_data import (
    LabelMapConfig,
    data_config_from_dict,
    read_image,
    read_label_map,
    scan_label_maps,
)

BACKBONE = "segmentation-backbone"  # graph prefix of the stage whose meta.json carries the pipeline
SOURCE = f"{BACKBONE}-fp32"
EVALUATION_BATCH = 32


class UnfinishedTraining(Exception):
    """The checkpoint did not come out of a finished training run: nothing is exported from it."""


def require_finished(checkpoint: dict[str, Any]) -> None:
    """Refuses a checkpoint whose training did not run to its end: models/segmentation/train.py saves
    eco_m2f.pt once, after every step-1 epoch (one validation mIoU each in `valid_miou_full_depth_curve`),
    steps 2-3 (the gate) and the test policies (`test`); and only a model of a user's images is judged here."""
    metrics = checkpoint.get("metrics") or {}
    missing = [k for k in ("valid_miou_full_depth_curve", "train_config", "beta", "stage_gflops", "test")
               if k not in metrics]
    if not ({"wall_seconds", "regate_seconds"} & set(metrics)):
        missing.append("wall_seconds")
    if missing:
        raise UnfinishedTraining(f"training did not finish (the checkpoint lacks {', '.join(missing)}): "
                                 "nothing is exported or quantized; train again to the end")
    epochs_run = len(metrics["valid_miou_full_depth_curve"])
    planned = int(metrics["train_config"].get("epochs", epochs_run))
    if epochs_run < 1:
        raise UnfinishedTraining("training ran no epoch: nothing is exported or quantized")
    if epochs_run < planned:
        raise UnfinishedTraining(f"training stopped after {epochs_run} of its {planned} epochs: nothing is "
                                 "exported or quantized; train again to the end")
    if (checkpoint.get("scene_config") or {}).get("source") != "label_maps":
        raise UnfinishedTraining("the checkpoint was trained on the synthetic scenes, not on your images: its "
                                 "gate is `make quantize-report`")


def read_finished(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's content once `require_finished` accepts it."""
    content: dict[str, Any] = torch.load(checkpoint, map_location="cpu", weights_only=True)
    require_finished(content)
    return content


class UserSegmentationQuantization(SegmentationQuantization):
    """The default segmentation family's staged quantization (graphs, per-stage calibration feeds, latency
    inputs, QAT refusal: SegmentationQuantization) calibrated on the user's validation split and scored on
    their test split at each image's own size."""

    metric = "test mIoU at each image's own size"

    def __init__(self, repository: Path, checkpoint: Path):
        super().__init__(repository, checkpoint)
        content = torch.load(checkpoint, map_location="cpu", weights_only=True)
        self.checkpoint_metrics: dict[str, Any] = content.get("metrics", {})
        data_cfg = data_config_from_dict(content["scene_config"])
        if not isinstance(data_cfg, LabelMapConfig):
            raise UnfinishedTraining(f"{checkpoint} was trained on the synthetic scenes, not on your images")
        self.data_cfg = data_cfg
        self._scan = scan_label_maps(data_cfg)
        self._size = int(self.pipeline["image_size"])
        self._test_inputs, self._test_shapes = self._served_inputs(self._scan.pairs["test"])
        self.test_reports: dict[str, dict[str, Any]] = {}  # backbone graph path -> figures of each `evaluate`

    def _served_inputs(self, pairs: list[tuple[Path, Path]]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """(N, 3, S, S) float32 model inputs as the service makes them, and each image's own (H, W)."""
        inputs: list[np.ndarray] = []
        shapes: list[tuple[int, int]] = []
        for image_path, _ in pairs:
            image = read_image(image_path, self.data_cfg)
            inputs.append(to_model_input(image, self._size)[0])
            shapes.append((int(image.shape[0]), int(image.shape[1])))
        return np.stack(inputs), shapes

    def calibration_plan(self, count: int = CALIBRATION_BATCHES) -> dict[str, int]:
        """How the validation split feeds calibration: batches of CALIBRATION_BATCH images (all of them in
        one batch when fewer), at most `count` batches; a remainder that fills no batch is left out."""
        images = len(self._scan.pairs["valid"])
        batch = min(CALIBRATION_BATCH, images)
        return {"validation_images": images, "batch": batch, "batches": min(count, images // max(batch, 1))}

    def calibration_images(self, count: int) -> list[dict[str, np.ndarray]]:
        """Up to `count` fixed-shape {"image": (B, 3, S, S)} batches of the user's validation images,
        resized as the service resizes (`calibration_plan`)."""
        plan = self.calibration_plan(count)
        batch, used = plan["batch"], plan["batch"] * plan["batches"]
        images, _ = self._served_inputs(self._scan.pairs["valid"][:used])
        return [{"image": images[i * batch:(i + 1) * batch]} for i in range(plan["batches"])]

    @property
    def test_images(self) -> int:
        return len(self._scan.pairs["test"])

    @property
    def stage_layout(self) -> dict[str, Any]:
        """`exporters.segmentation.stage_names`'s arguments for these stages (any recipe)."""
        return {"n_layers": self._n_layers, "gate": self._gate_after > 0}

    def evaluate(self, graphs: dict[str, Path]) -> float:
        """The staged graphs (the gate's depth) on the test split; each mask back to its image's size
        (nearest) against the image's own annotation, ignored pixels left out -> dataset mIoU."""
        staged = seg_export.StagedOnnx({
            "backbone": graphs[BACKBONE], "head": graphs["segmentation-head"],
            "encoder_layers": [graphs[f"segmentation-encoder{k}"] for k in range(1, self._n_layers + 1)],
            "gate": graphs.get("segmentation-gate"),
        }, self._first_exit, self._gate_after)
        matrix = np.zeros((self._n_classes, self._n_classes), np.int64)
        layers: list[np.ndarray] = []
        pairs = self._scan.pairs["test"]
        for start in range(0, len(pairs), EVALUATION_BATCH):
            logits, exits = staged.run(self._test_inputs[start:start + EVALUATION_BATCH])
            layers.append(exits)
            for mask, (_, label_path), shape in zip(logits.argmax(1).astype(np.uint8), pairs[start:],
                                                    self._test_shapes[start:], strict=False):
                labels = read_label_map(label_path, self._scan.classes, shape, self.data_cfg)
                matrix += confusion(mask_to_size(mask, *shape), labels, self._n_classes)
        iou = iou_per_class(matrix)
        report = {"miou": float(np.nanmean(iou)), "pixel_accuracy": float(np.trace(matrix) / max(int(matrix.sum()), 1)),
                  "mean_layers": float(np.concatenate(layers).mean()), "images": len(pairs)}
        self.test_reports[str(graphs[BACKBONE])] = report
        return report["miou"]


def remove_variants(repository: Path) -> list[str]:
    """Deletes the segmentation-*-<recipe> stages made from the fp32 stages by an earlier run (their gate
    judged other fp32 stages) -> their names. The fp32 stages and other families' models stay."""
    removed = []
    for meta_path in sorted(repository.glob("segmentation-*/*/meta.json")):
        model = meta_path.parent.parent
        if model.name.endswith("-fp32") or not model.is_dir():  # a model with several versions is seen once per version
            continue
        source = str(json.loads(meta_path.read_text()).get("source_model", ""))
        if source.startswith("segmentation-") and source.endswith("-fp32"):
            shutil.rmtree(model)
            removed.append(model.name)
    return removed


def verdict(row: dict[str, Any], fp32: dict[str, Any], test: dict[str, Any] | None, tolerance: float) -> dict[str, Any]:
    """One recipe's line of the report from its gated row: passed, failed (its mIoU loss over the tolerance)
    or refused (by its toolchain), with the mIoU and pixel accuracy differences against fp32."""
    out: dict[str, Any] = {"recipe": row["recipe"], "tolerance_relative_miou_loss": tolerance}
    if row["status"] != "ok":
        return {**out, "verdict": "refused", "reason": "; ".join(dict.fromkeys(row.get("notes", [])))
                or "refused by its toolchain"}
    test = test or {"miou": row["quality"], "pixel_accuracy": float("nan"), "mean_layers": float("nan")}
    out.update(test_miou=test["miou"], miou_difference=test["miou"] - fp32["miou"],
               pixel_accuracy=test["pixel_accuracy"], pixel_accuracy_difference=test["pixel_accuracy"] -
               fp32["pixel_accuracy"], mean_layers=test["mean_layers"], relative_miou_loss=row["relative_loss"],
               speedup_batch_32=row["speedup"]["32"], size_ratio=row["size_ratio"])
    if row["passed"]:
        return {**out, "verdict": "passed"}
    return {**out, "verdict": "failed", "reason": f"test mIoU {test['miou']:.4f} vs fp32 {fp32['miou']:.4f}: "
                                                 f"relative loss {row['relative_loss']:.2%} over the "
                                                 f"{tolerance:.1%} tolerance"}


def set_stage_aliases(repository: Path, graphs: list[str], recipe: str) -> None:
    """Each stage's alias (`segmentation-backbone`, ...) -> its <recipe> model, as `make quantize-report` does."""
    for graph in graphs:
        set_default_alias(repository, graph, f"{graph}-{recipe}")


def quantize_user_model(checkpoint: Path, repository: Path, command: str,
                        recipes: list[str] | None = None) -> dict[str, Any]:
    """Runs `recipes` (default: every deployable one) on the fp32 stages in `repository` judged on the
    checkpoint's data (validation: calibration, test: quality), writes the passing ones as
    segmentation-<stage>-<recipe> beside them, points the stage aliases at the gate's default and returns
    {"metric", "split", "tolerance_relative_miou_loss", "default", "serve", "calibration", "recipes":
    [verdict, ...], "fp32"}; the fp32 backbone's meta.json records it (without "fp32")."""
    read_finished(checkpoint)
    family = UserSegmentationQuantization(repository, checkpoint)
    names = ["fp32", *[r for r in (recipes if recipes is not None else list(RECIPES)) if r != "fp32"]]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp).resolve()  # absolute: the recipes run inside their work directory
        rows = [run_recipe(family, recipe, work) for recipe in names]
        if rows[0]["status"] != "ok":
            raise RuntimeError(f"the fp32 stages could not be scored: {rows[0].get('notes')}")
        measure_latency(family, rows)
        gate(rows, family)
        fp32 = family.test_reports[rows[0]["paths"][BACKBONE]]
        verdicts = [verdict(r, fp32, family.test_reports.get(r.get("paths", {}).get(BACKBONE, "")),
                            family.max_relative_loss) for r in rows]
        for row, line in zip(rows, verdicts, strict=True):
            if row["recipe"] != "fp32" and line["verdict"] == "passed":
                line["exported"] = _export(repository, family, row, line)
    default = default_recipe(rows)
    set_stage_aliases(repository, list(family.graphs()), default)
    result: dict[str, Any] = {
        "metric": family.metric, "split": "your test split (calibration: your validation split)",
        "tolerance_relative_miou_loss": family.max_relative_loss, "default": f"{BACKBONE}-{default}",
        "serve": f"INFERSUITE_SEGMENTATION_BACKBONE_MODEL={BACKBONE}-{default}",
        "calibration": family.calibration_plan(), "test_images": family.test_images,
        "recipes": [v for v in verdicts if v["recipe"] != "fp32"], "fp32": fp32}
    record_quantization_gate(repository / SOURCE / "1", {k: v for k, v in result.items() if k != "fp32"})
    write_manifests(repository, [SOURCE, *_stage_models(repository, SOURCE), *(
        m for v in result["recipes"] for m in v.get("exported", []))], command)
    return result


def _stage_models(repository: Path, backbone: str) -> list[str]:
    """The other stages the backbone's pipeline names (encoder layers, head, gate)."""
    stages = json.loads((repository / backbone / "1" / "meta.json").read_text())["pipeline"]["stages"]
    return [*stages["encoder_layers"], stages["head"], *([stages["gate"]] if stages.get("gate") else [])]


def _export(repository: Path, family: UserSegmentationQuantization, row: dict[str, Any],
            line: dict[str, Any]) -> list[str]:
    """Every stage of a passing recipe as <stage>-<recipe>; the backbone's pipeline names those stages."""
    recipe = row["recipe"]
    written = []
    for graph, path in row["paths"].items():
        meta: dict[str, Any] = {
            "recipe": recipe, "quality": {"test_miou": line["test_miou"], "pixel_accuracy": line["pixel_accuracy"],
                                          "mean_layers": line["mean_layers"]},
            "relative_quality_loss": row["relative_loss"], "quality_gate": "passed",
            "kernels": row["kernels"][graph]["verdict"], "notes": row["notes"]}
        if graph == BACKBONE:
            pipeline = dict(family.pipeline)
            pipeline["stages"] = seg_export.stage_names(recipe=recipe, **family.stage_layout)
            meta["pipeline"] = pipeline
        write_variant(repository, f"{graph}-fp32", f"{graph}-{recipe}", Path(path), meta,
                      tensorrt_precision=TENSORRT_PRECISION.get(recipe))
        written.append(f"{graph}-{recipe}")
    return written


def export_user_model(checkpoint: Path, repository: Path, command: str, quantize: bool = True,
                      recipes: list[str] | None = None) -> dict[str, Any] | None:
    """The whole path of a model trained on a user's images: refuses an unfinished checkpoint (before
    anything is written), removes an earlier run's recipes, exports the fp32 stages (parity-checked,
    exporters/segmentation.py), points the stage aliases at them, then, with `quantize`, the gate ->
    its result (None without it). Every model written gets its manifest.json."""
    read_finished(checkpoint)
    remove_variants(repository)  # a previous run's recipes were judged against other fp32 stages
    seg_export.export_segmentation(checkpoint, repository)
    graphs = [name.removesuffix("-fp32") for name in [SOURCE, *_stage_models(repository, SOURCE)]]
    set_stage_aliases(repository, graphs, "fp32")
    if quantize:
        return quantize_user_model(checkpoint, repository, command, recipes)
    meta_path = repository / SOURCE / "1" / "meta.json"  # a verdict of an earlier run judged other stages
    meta = json.loads(meta_path.read_text())
    if meta.pop("quantization_gate", None) is not None:
        meta_path.write_text(json.dumps(checked_meta(SOURCE, 1, meta), indent=2, sort_keys=True) + "\n")
    write_manifests(repository, [SOURCE, *_stage_models(repository, SOURCE)], command)
    return None


def render_gate(result: dict[str, Any] | None, why_not: str = "") -> str:
    """The quality report's section: one row per recipe, the reason of each failure or refusal."""
    if result is None:
        return f"\n## Quantization gate\n\nNot run: {why_not}.\n"
    tolerance = result["tolerance_relative_miou_loss"]
    fp32 = result["fp32"]
    calibration = result["calibration"]
    lines = ["", "## Quantization gate", "",
             f"The recipes of `make quantize-report` on the exported stages, each stage calibrated on what the fp32 "
             f"pipeline feeds it from your validation split ({calibration['batches']} batch(es) of "
             f"{calibration['batch']} of its {calibration['validation_images']} images) and the staged pipeline "
             f"judged on your test split ({fp32['images']} images, masks at each image's own size, ignored pixels "
             f"left out): a recipe passes when its test mIoU is at most {tolerance:.1%} (relative) below fp32's "
             f"({100 * fp32['miou']:.2f}%; pixel accuracy {100 * fp32['pixel_accuracy']:.2f}%, onnxruntime). "
             f"Passing recipes are exported as segmentation-<stage>-<recipe>; failed or refused ones are not. "
             f"The stage aliases name {result['default']} (a passing recipe only when at least "
             f"{MIN_DEFAULT_SPEEDUP}x faster than fp32 at batch 32); the service serves the backbone its settings "
             f"name: `{result['serve']}`.", "",
             "| recipe | test mIoU % | mIoU - fp32 | pixel acc. % | mean layers | relative mIoU loss | speed-up (32) "
             "| verdict | exported |",
             "|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for v in result["recipes"]:
        if v["verdict"] == "refused":
            lines.append(f"| {v['recipe']} | | | | | | | refused | no |")
            continue
        exported = f"{BACKBONE}-{v['recipe']} (+ {len(v['exported']) - 1} stages)" if "exported" in v else "no"
        lines.append(f"| {v['recipe']} | {100 * v['test_miou']:.2f} | {100 * v['miou_difference']:+.2f} | "
                     f"{100 * v['pixel_accuracy']:.2f} | {v['mean_layers']:.2f} | {v['relative_miou_loss']:+.2%} "
                     f"(<= {tolerance:.1%}) | {v['speedup_batch_32']:.2f}x | {v['verdict']} | {exported} |")
    reasons = [f"- {v['recipe']}: {v['reason']}" for v in result["recipes"] if "reason" in v]
    return "\n".join([*lines, *(["", "Not exported:", "", *reasons] if reasons else [])]) + "\n"
