"""Exports a trained ECO-M2F checkpoint as STAGED graphs into the model repository.

Data-dependent depth cannot be one traced graph, so the model becomes 2 + L graphs that the
segmentation service runs as a loop (backbone+gate -> the chosen number of encoder layers -> head):

    segmentation-backbone-<recipe>     image (B, 3, H, W) -> tokens, pixel_features, exit_logits
    segmentation-encoder<k>-<recipe>   tokens (B, T, D) -> tokens_out           (k = 1..L)
    segmentation-head-<recipe>         tokens, pixel_features -> logits (B, C, H, W)
    segmentation-gate-<recipe>         tokens after layer k -> exit_logits (only when the gate reads
                                       the tokens after encoder layer k = gate_after_layer; the
                                       backbone then gives no exit_logits)

Every graph keeps dim 0 = batch and gets a dynamic_batching block, so requests that chose
different depths still share the backbone, the head and every encoder layer they both run.
Parity is checked per stage (random and real inputs, several batch sizes) and end to end (the
staged onnxruntime loop vs the torch model, per fixed exit and with the gate) on held-out scenes.
The backbone's meta.json carries the pipeline (graph names, exits, GFLOPs per stage, classes).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort
import torch
from tqdm import tqdm

from exporters.onnx_export import OPSET, ParityError, check_parity, export_onnx, max_abs_diff
from exporters.repository import ServingConfig, sha256_file, write_model
from models.segmentation.data import CLASS_NAMES, SceneConfig, make_scenes, to_model_input
from models.segmentation.eco_m2f import (
    BackboneGateStage,
    EcoM2F,
    EncoderLayerStage,
    ExportStage,
    GateStage,
    HeadStage,
    gflops_at_exit,
    stage_gflops,
)
from models.segmentation.metrics import confusion, mean_iou
from models.segmentation.train import load_checkpoint

if TYPE_CHECKING:
    from exporters.quantize.family import QuantFamily

STAGE_ATOL = 1e-4  # per-stage |torch - onnxruntime| limit (float32 reassociation in convs/attention)
PARITY_BATCHES = (1, 3, 8)


def stage_names(n_layers: int, recipe: str = "fp32", family: str = "segmentation",
                gate: bool = False) -> dict[str, Any]:
    """Graph names of the stages; `gate`: the gate is its own stage (gate_after_layer > 0)."""
    return {"backbone": f"{family}-backbone-{recipe}",
            "encoder_layers": [f"{family}-encoder{k}-{recipe}" for k in range(1, n_layers + 1)],
            "head": f"{family}-head-{recipe}", **({"gate": f"{family}-gate-{recipe}"} if gate else {})}


class StagedOnnx:
    """The service's loop over onnxruntime sessions (reference for parity and ONNX quality)."""

    def __init__(self, paths: dict[str, Any], first_exit: int, gate_after_layer: int = 0):
        def session(path: Path) -> ort.InferenceSession:
            return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        self.backbone = session(paths["backbone"])
        self.layers = [session(p) for p in paths["encoder_layers"]]
        self.head = session(paths["head"])
        self.gate = session(paths["gate"]) if gate_after_layer else None
        self.first_exit, self.gate_after_layer = first_exit, gate_after_layer

    @classmethod
    def from_repository(cls, repository: Path, n_layers: int, first_exit: int, recipe: str = "fp32") -> StagedOnnx:
        """The stages of a repository (the backbone's meta.json says whether the gate is its own stage)."""
        backbone_meta = repository / stage_names(n_layers, recipe)["backbone"] / "1" / "meta.json"
        gate_after_layer = int(json.loads(backbone_meta.read_text())["pipeline"].get("gate_after_layer", 0))
        names = stage_names(n_layers, recipe, gate=gate_after_layer > 0)
        path = lambda name: repository / name / "1" / "model.onnx"  # noqa: E731
        return cls({"backbone": path(names["backbone"]), "head": path(names["head"]),
                    "encoder_layers": [path(n) for n in names["encoder_layers"]],
                    **({"gate": path(names["gate"])} if "gate" in names else {})}, first_exit, gate_after_layer)

    def run(self, image: np.ndarray, exit_layer: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """image (B, 3, H, W) -> (logits (B, C, H, W), exit layer per image (B,))."""
        outputs = self.backbone.run(None, {"image": image})
        tokens, pixel_features = outputs[:2]
        # Until the gate has run every image counts as going to full depth (all run layers <= first exit).
        exits = np.full(len(image), len(self.layers) if exit_layer is None else exit_layer)
        if exit_layer is None and self.gate is None:
            exits = np.argmax(outputs[2], 1) + self.first_exit
        logits = np.empty((len(image), *self.head.get_outputs()[0].shape[1:2], *image.shape[2:]), np.float32)
        for depth, layer in enumerate(self.layers, start=1):
            if not (exits >= depth).any():
                break
            running = exits >= depth  # only images that still need this layer run it
            tokens[running] = layer.run(None, {"tokens": tokens[running]})[0]
            if exit_layer is None and self.gate is not None and depth == self.gate_after_layer:
                exits = np.argmax(self.gate.run(None, {"tokens": tokens})[0], 1) + self.first_exit
            done = exits == depth
            if done.any():
                logits[done] = self.head.run(None, {"tokens": tokens[done], "pixel_features": pixel_features[done]})[0]
        return logits, exits


def _stage_parity(stage: ExportStage, path: Path, real: tuple[torch.Tensor, ...]) -> float:
    inputs = [stage.example_inputs(b) for b in PARITY_BATCHES] + [real]
    return check_parity(stage, path, inputs, atol=STAGE_ATOL)


def _real_stage_inputs(model: EcoM2F, image: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...]]:
    with torch.no_grad():
        tokens, pixel_features = model.forward_features(image)
        gate_tokens = model.gate_tokens(tokens)
    return {"backbone": (image,), "layer": (tokens,), "head": (tokens, pixel_features), "gate": (gate_tokens,)}


def end_to_end_parity(model: EcoM2F, staged: StagedOnnx, image: np.ndarray) -> dict[str, float]:
    """Staged onnxruntime loop vs torch on held-out images, per fixed exit and with the gate."""
    worst, agreement = 0.0, 1.0
    for exit_layer in [*model.config.exits, None]:
        with torch.no_grad():
            want, want_exits = model(torch.from_numpy(image), exit_layer)
        got, got_exits = staged.run(image, exit_layer)
        if not np.array_equal(want_exits.numpy(), got_exits):
            raise AssertionError(f"gate disagrees with torch on {np.sum(want_exits.numpy() != got_exits)} images")
        worst = float(np.fmax(worst, max_abs_diff(want.numpy(), got)))  # +inf on NaN/Inf
        agreement = min(agreement, float(np.mean(want.numpy().argmax(1) == got.argmax(1))))
    if not np.isfinite(worst):
        raise ParityError("the staged onnxruntime pipeline or torch gives NaN/Inf logits")
    return {"max_abs_logit_diff": worst, "min_mask_pixel_agreement": agreement, "images": len(image)}


def holdout_images(checkpoint: dict[str, Any], count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` test images of the checkpoint's data at the model's size: for a user's labelled images
    (models/segmentation/user_data.py) the first of their test split; for the synthetic world, test scenes of a
    smaller set drawn with the checkpoint's scene settings and seed.

    A smaller set draws its difficulties and scenes from a different point of the random stream,
    so these are fresh scenes of the training distribution, not training scenes."""
    if checkpoint["scene_config"].get("source") == "label_maps":
        from models.segmentation.user_data import data_config_from_dict, load_data

        scenes = load_data(data_config_from_dict(checkpoint["scene_config"]), splits=("test",))
        rows = scenes.test[:count]
        return to_model_input(scenes.images[rows]), scenes.labels[rows]
    scene_cfg = SceneConfig(**checkpoint["scene_config"])
    n_images = min(scene_cfg.n_images, int(np.ceil(count / scene_cfg.test_fraction)) + 10)
    scenes = make_scenes(replace(scene_cfg, n_images=n_images))
    rows = scenes.test[:count]
    return to_model_input(scenes.images[rows]), scenes.labels[rows]


def class_names(checkpoint: dict[str, Any], n_classes: int) -> list[str]:
    """The classes a checkpoint was trained on: a user's (recorded at training) or the synthetic scenes'."""
    return list(checkpoint.get("class_names") or CLASS_NAMES[:n_classes])


def _user_data_fields(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """For a model trained on a user's images: the ignore index of their annotation files and how served
    class ids relate to the annotations' values (ADE20K: the label minus 1). Nothing for the synthetic scenes."""
    data = checkpoint["scene_config"]
    if data.get("source") != "label_maps":
        return {}
    relation = "served class k = ADE20K label k + 1; label 0 ignored" if data["format"] == "ade20k" else \
        "served class k = annotation value k"
    return {"ignore_index": checkpoint["ignore_index"], "data_format": data["format"], "class_ids": relation}


def export_segmentation(checkpoint_path: Path, repository: Path, recipe: str = "fp32",
                        serving: ServingConfig | None = None, holdout: int = 48) -> Path:
    """Exports all stages, fails on a parity miss, writes them; -> the backbone's version dir."""
    model, checkpoint = load_checkpoint(checkpoint_path)
    cfg = model.config
    names = stage_names(cfg.n_layers, recipe, gate=cfg.gate_after_layer > 0)
    image, _ = holdout_images(checkpoint, holdout)
    real = _real_stage_inputs(model, torch.from_numpy(image[:8]))
    costs = stage_gflops(model)
    common = {"family": "segmentation", "architecture": "eco-m2f", "recipe": recipe,
              "source_checkpoint": checkpoint_path.name, "source_checkpoint_sha256": sha256_file(checkpoint_path),
              "onnx_opset": OPSET, "torch_version": torch.__version__}
    serving = serving or ServingConfig()
    with tempfile.TemporaryDirectory() as tmp:
        stages: list[tuple[str, ExportStage, tuple[torch.Tensor, ...], str]] = [
            (names["backbone"], BackboneGateStage(model), real["backbone"], "backbone_gate")]
        stages += [(name, EncoderLayerStage(model, k), real["layer"], f"encoder_layer_{k}")
                   for k, name in enumerate(names["encoder_layers"], start=1)]
        stages.append((names["head"], HeadStage(model), real["head"], "head"))
        if "gate" in names:
            stages.append((names["gate"], GateStage(model), real["gate"], "gate"))
        paths, parity = {}, {}
        # A bar per export step on a terminal (disable=None): eight graphs, each exported and checked.
        for name, stage, inputs, _kind in tqdm(stages, desc="segmentation export + parity", unit="graph",
                                               leave=False, disable=None):
            paths[name] = export_onnx(stage, Path(tmp) / f"{name}.onnx")
            parity[name] = _stage_parity(stage, paths[name], inputs)
        staged = StagedOnnx({"backbone": paths[names["backbone"]], "head": paths[names["head"]],
                             "encoder_layers": [paths[n] for n in names["encoder_layers"]],
                             "gate": paths.get(names.get("gate", ""))}, cfg.first_exit, cfg.gate_after_layer)
        e2e = end_to_end_parity(model, staged, image)
        pipeline = {"stages": names, "image_size": cfg.image_size, "n_layers": cfg.n_layers,
                    "exits": cfg.exits, "gate_after_layer": cfg.gate_after_layer,
                    "class_names": class_names(checkpoint, cfg.n_classes), "beta": checkpoint["beta"],
                    **_user_data_fields(checkpoint),
                    "stage_gflops": costs, "gflops_full_depth": gflops_at_exit(costs, cfg.n_layers)}
        for name, _, _, kind in stages:
            meta = {**common, "stage": kind, "parity_max_abs_diff": parity[name]}
            if name == names["backbone"]:
                meta.update(pipeline=pipeline, end_to_end_parity=e2e, quality=checkpoint["metrics"].get("test", []))
            write_model(repository, name, paths[name], meta, serving)
    return repository / names["backbone"] / "1"


# ---- hooks for the quantization recipes (fixed shapes, held-out scoring)


def calibration_batches(count: int, batch_size: int, seed: int = 1234,
                        image_size: int = 64) -> Iterator[dict[str, np.ndarray]]:
    """`count` fixed-shape {"image": (batch_size, 3, H, W)} batches of fresh synthetic scenes
    (a seed disjoint from training). Encoder and head calibration inputs come from running the
    fp32 backbone on these."""
    scenes = make_scenes(SceneConfig(n_images=count * batch_size, image_size=image_size, seed=seed))
    images = to_model_input(scenes.images)
    for start in range(0, count * batch_size, batch_size):
        yield {"image": images[start:start + batch_size]}


def onnx_quality(staged: StagedOnnx, image: np.ndarray, labels: np.ndarray, n_classes: int,
                 exit_layer: int | None = None, batch_size: int = 32) -> dict[str, float]:
    """Dataset mIoU and mean exit layer of a staged graph set on held-out scenes."""
    matrix, layers = np.zeros((n_classes, n_classes), np.int64), []
    for start in range(0, len(image), batch_size):
        logits, exits = staged.run(image[start:start + batch_size], exit_layer)
        matrix += confusion(logits.argmax(1), labels[start:start + batch_size], n_classes)
        layers.append(exits)
    return {"miou": mean_iou(matrix), "mean_layers": float(np.concatenate(layers).mean())}


def build(artifacts: Path, repository: Path, quick: bool) -> Path:
    """`python -m exporters.build --families segmentation`: train all three steps when no
    checkpoint exists, then export the stages."""
    checkpoint = artifacts / "segmentation" / "eco_m2f.pt"
    if not checkpoint.is_file():
        from models.segmentation import train

        train.main(["--out", str(checkpoint.parent), *(["--quick"] if quick else [])])
    return export_segmentation(checkpoint, repository)


def quant_families(repository: Path, artifacts: Path) -> list[QuantFamily]:
    """What the quantization report measures: the staged pipeline, when built and its checkpoint is at hand."""
    checkpoint = artifacts / "segmentation" / "eco_m2f.pt"
    if not ((repository / "segmentation-backbone-fp32").is_dir() and checkpoint.is_file()):
        return []
    from exporters.family_quant import SegmentationQuantization

    return [SegmentationQuantization(repository, checkpoint)]


def seed_configs() -> list[Any]:
    """The default data and training configs, whose seeds the shipped manifests record."""
    from models.segmentation.train import TrainConfig

    return [SceneConfig(), TrainConfig()]
