"""Segmentation domain logic (no grpc): validation, then the ECO-M2F loop over staged graphs:

    backbone+gate -> exit layer (effort) -> that many encoder-layer graphs -> head -> argmax

(or, when the backbone's meta.json names a gate stage after layer k: backbone -> k encoder layers
-> gate -> exit layer -> the remaining encoder layers -> head; k never exceeds the first exit).

Every stage is a model of the repository with dim 0 = batch, so the runtime's dynamic batcher
can merge concurrent requests per stage: requests that chose different depths still share the
backbone, the head and the encoder layers they both run.

Effort: `auto` takes the gate's exit (the beta the model was deployed with); `exit_layer` forces
one of the model's exits; `gflops_budget` takes the gate's exit capped at the deepest exit whose
whole-image cost fits the budget (a budget below the shallowest exit is refused, not exceeded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from infersuite.services.runtime import InvalidArgument, Runtime
from infersuite.services.runtime.model_manager import ModelSet
from infersuite.services.segmentation.imaging import (
    ImageLimits,
    decode_image,
    encode_mask_png,
    mask_to_size,
    raw_image,
    to_model_input,
)
from infersuite.services.segmentation.settings import SegmentationSettings

MASK_ENCODINGS = ("png", "raw")


@dataclass(frozen=True)
class RawPixels:
    pixels: bytes
    height: int
    width: int
    channels: int


@dataclass(frozen=True)
class Effort:
    mode: Literal["auto", "exit_layer", "gflops_budget"] = "auto"
    value: float = 0.0  # the exit layer or the GFLOPs budget


@dataclass(frozen=True)
class SegmentQuery:
    image: bytes | RawPixels | None  # encoded PNG/JPEG bytes or raw pixels
    effort: Effort = Effort()
    mask_encoding: str = "png"  # "png" or "raw"


@dataclass(frozen=True)
class SegmentResult:
    mask: bytes  # PNG or raw (height x width uint8 class ids)
    mask_encoding: str
    height: int
    width: int
    class_names: list[str]
    exit_layer: int
    gflops: float
    gflops_full_depth: float
    model: str
    model_version: str


@dataclass(frozen=True)
class Pipeline:
    """What the backbone's meta.json says about the staged model."""

    backbone: str
    encoder_layers: list[str]
    head: str
    image_size: int
    exits: list[int]
    class_names: list[str]
    stage_gflops: dict[str, float]
    gate: str | None = None  # the gate's own stage when it reads the tokens after layer gate_after_layer
    gate_after_layer: int = 0  # 0: the backbone gives the exit logits

    @classmethod
    def from_meta(cls, backbone: str, meta: dict[str, Any]) -> Pipeline:
        pipeline = meta["pipeline"]
        stages = pipeline["stages"]
        return cls(backbone, list(stages["encoder_layers"]), stages["head"], int(pipeline["image_size"]),
                   [int(k) for k in pipeline["exits"]], list(pipeline["class_names"]), pipeline["stage_gflops"],
                   stages.get("gate"), int(pipeline.get("gate_after_layer", 0)))

    @property
    def models(self) -> list[str]:
        return [self.backbone, *self.encoder_layers, self.head, *([self.gate] if self.gate else [])]

    @classmethod
    def derive(cls, models: ModelSet, backbone_name: str) -> Pipeline:
        """The pipeline of a model set (the lifecycle rebuilds it on every load or swap); refuses a
        set that lacks a stage the backbone's meta.json names, or whose exits it cannot run."""
        backbone = models.get(backbone_name)
        pipeline = cls.from_meta(backbone.name, backbone.meta)
        missing = [name for name in pipeline.models if name not in models]
        if missing:
            raise ValueError(f"the backbone's pipeline names stages outside the model set: {', '.join(missing)}")
        if not pipeline.exits or pipeline.exits != sorted(pipeline.exits) or \
                not 1 <= pipeline.exits[0] <= pipeline.exits[-1] <= len(pipeline.encoder_layers):
            raise ValueError(f"exits {pipeline.exits} do not fit {len(pipeline.encoder_layers)} encoder layers")
        if (pipeline.gate is None) != (pipeline.gate_after_layer == 0) or \
                not 0 <= pipeline.gate_after_layer <= pipeline.exits[0]:
            raise ValueError(f"a gate stage after layer {pipeline.gate_after_layer} does not fit "
                             f"exits {pipeline.exits}")
        return pipeline

    def gflops(self, exit_layer: int) -> float:
        costs = self.stage_gflops
        return costs["backbone_gate"] + exit_layer * costs["encoder_layer"] + costs["head"]


def choose_exit(pipeline: Pipeline, effort: Effort, gate_exit: int) -> int:
    """The exit layer for one image under `effort` (already validated)."""
    if effort.mode == "exit_layer":
        return int(effort.value)
    if effort.mode == "gflops_budget":
        affordable = [k for k in pipeline.exits if pipeline.gflops(k) <= effort.value]
        return min(gate_exit, max(affordable))
    return gate_exit


def validate_effort(pipeline: Pipeline, effort: Effort) -> None:
    if effort.mode == "exit_layer" and effort.value not in pipeline.exits:
        raise InvalidArgument(f"effort.exit_layer={effort.value:g} is not an exit of this model "
                              f"(exits are {pipeline.exits[0]}..{pipeline.exits[-1]})")
    if effort.mode == "gflops_budget":
        cheapest = pipeline.gflops(pipeline.exits[0])
        if not math.isfinite(effort.value) or effort.value < cheapest:
            raise InvalidArgument(f"effort.gflops_budget={effort.value:g} is below {cheapest:.4f}, "
                                  f"the cost of the shallowest exit (layer {pipeline.exits[0]})")


def _encode_mask(mask: np.ndarray, height: int, width: int, encoding: str) -> bytes:
    """The model-size mask (S, S) at the image's size, as PNG or raw bytes."""
    mask = mask_to_size(mask, height, width)
    return encode_mask_png(mask) if encoding == "png" else mask.tobytes()


class SegmentationHandler:
    def __init__(self, settings: SegmentationSettings, runtime: Runtime):
        self._settings = settings
        self._served = runtime.service_models(
            "segmentation", lambda models: Pipeline.derive(models, settings.backbone_model))
        self._executor = runtime.executor
        self._limits = ImageLimits(settings.max_image_bytes, settings.max_side, settings.max_pixels)
        self._layers_used = runtime.metrics.histogram(
            "infersuite_segmentation_encoder_layers", "Encoder layers run per Segment request, by effort mode.",
            ["effort"], buckets=tuple(range(1, 13)))
        self._gflops = runtime.metrics.histogram(
            "infersuite_segmentation_gflops", "GFLOPs spent per Segment request, by effort mode.",
            ["effort"], buckets=(0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.1, 0.15, 0.2, 0.5, 1, 2, 5,
                                 10, 20, 50, 100, 200, 500))

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline of the model set serving now."""
        return self._served.current.state

    def _decode(self, image: bytes | RawPixels | None) -> np.ndarray:
        if image is None:
            raise InvalidArgument("image is missing: set image.encoded (PNG/JPEG bytes) or image.raw")
        if isinstance(image, RawPixels):
            if len(image.pixels) > self._limits.max_bytes:
                raise InvalidArgument(f"image.raw.pixels has {len(image.pixels)} bytes, more than the maximum "
                                      f"of {self._limits.max_bytes}")
            return raw_image(image.pixels, image.height, image.width, image.channels, self._limits)
        return decode_image(image, self._limits)

    @staticmethod
    async def _run_depth(models: ModelSet, pipeline: Pipeline, image: np.ndarray,
                         effort: Effort) -> tuple[np.ndarray, int]:
        """One image (1, 3, S, S) through the staged graphs -> (class mask (S, S) uint8, exit layer)."""
        backbone = await models.infer(pipeline.backbone, {"image": image})
        tokens = backbone["tokens"]  # (1, T, D)
        gate_after = pipeline.gate_after_layer  # <= the first exit: every image runs these layers
        for name in pipeline.encoder_layers[:gate_after]:
            tokens = (await models.infer(name, {"tokens": tokens}))["tokens_out"]
        exit_logits = backbone["exit_logits"] if pipeline.gate is None else \
            (await models.infer(pipeline.gate, {"tokens": tokens}))["exit_logits"]
        gate_exit = int(np.argmax(exit_logits[0])) + pipeline.exits[0]
        exit_layer = choose_exit(pipeline, effort, gate_exit)
        for name in pipeline.encoder_layers[gate_after:exit_layer]:
            tokens = (await models.infer(name, {"tokens": tokens}))["tokens_out"]
        head = await models.infer(pipeline.head, {"tokens": tokens,
                                                        "pixel_features": backbone["pixel_features"]})
        return np.argmax(head["logits"][0], axis=0).astype(np.uint8), exit_layer  # (S, S)

    async def segment(self, query: SegmentQuery) -> SegmentResult:
        if query.mask_encoding not in MASK_ENCODINGS:
            raise InvalidArgument(f"mask_encoding {query.mask_encoding!r} is unknown (use png or raw)")
        with self._served.use() as snapshot:  # every stage, and the pipeline read from them, of one set
            pipeline = snapshot.state
            validate_effort(pipeline, query.effort)
            # Decoding and resizing can take tens of ms for large images: on the runtime's executor.
            rgb = await self._executor.run(self._decode, query.image)
            height, width = rgb.shape[:2]
            model_input = await self._executor.run(to_model_input, rgb, pipeline.image_size)
            mask, exit_layer = await self._run_depth(snapshot.models, pipeline, model_input, query.effort)
            backbone = snapshot.models.get(pipeline.backbone)
        encoded = await self._executor.run(_encode_mask, mask, height, width, query.mask_encoding)
        gflops = pipeline.gflops(exit_layer)
        self._layers_used.labels(query.effort.mode).observe(exit_layer)
        self._gflops.labels(query.effort.mode).observe(gflops)
        return SegmentResult(encoded, query.mask_encoding, height, width, pipeline.class_names, exit_layer, gflops,
                             pipeline.gflops(pipeline.exits[-1]), backbone.name, backbone.version)
