"""`segmentation`: images of mixed size and difficulty for the adaptive-depth (ECO-M2F) service.

Each image is a noisy background with 1..max_shapes filled rectangles and discs: few large
shapes on a clean background are easy, many small ones under heavy noise are hard, which is
what the service's gate is meant to tell apart. Sides are drawn from min_side..max_side (not
square in general); a share of the images is sent PNG-encoded (pillow), the rest raw RGB.
Effort: `auto` (the gate), `exit:N` (a fixed exit layer) or `exits:2,4,6` (cycled, one per request).
Checks: a RAW mask of exactly height x width class ids below len(class_names), the input's size
echoed, 1 <= exit_layer, 0 < gflops <= gflops_full_depth.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import grpc
import numpy as np

from infersuite.loadtest.generators.base import GeneratorError, RequestPool, check_unknown, int_param, register

PARAMS = {"min_side", "max_side", "max_shapes", "png_share", "effort"}


@dataclass(frozen=True)
class ImageShape:
    height: int
    width: int


def synthetic_image(rng: np.random.Generator, height: int, width: int, shapes: int, noise: float) -> np.ndarray:
    """(H, W, 3) uint8: a background plus `shapes` filled rectangles/discs, then Gaussian noise."""
    image = np.empty((height, width, 3), np.float32)
    image[:] = rng.uniform(0, 255, 3)  # background colour
    rows, cols = np.mgrid[0:height, 0:width]
    for _ in range(shapes):
        colour = rng.uniform(0, 255, 3)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        size = rng.uniform(0.05, 0.4) * min(height, width)
        if rng.random() < 0.5:
            inside = (np.abs(rows - cy) < size) & (np.abs(cols - cx) < size * rng.uniform(0.5, 2.0))
        else:
            inside = (rows - cy) ** 2 + (cols - cx) ** 2 < size**2
        image[inside] = colour
    image += rng.normal(0, noise, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _exits(effort: str) -> list[int]:
    """[] for auto, else the exit layers to cycle through."""
    if effort == "auto":
        return []
    kind, _, values = effort.partition(":")
    try:
        exits = [int(v) for v in values.split(",")] if kind in ("exit", "exits") else []
    except ValueError:
        exits = []
    if not exits or any(e < 1 for e in exits):
        raise GeneratorError(f"segmentation: --param effort={effort!r}: use auto, exit:N or exits:2,4,6")
    return exits


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


class SegmentationGenerator:
    name = "segmentation"
    grpc_service = "infersuite.segmentation.v1.SegmentationService"

    def __init__(self, params: dict[str, str]):
        check_unknown(params, PARAMS, self.name)
        self.min_side, self.max_side = int_param(params, "min_side", 64), int_param(params, "max_side", 256)
        if self.min_side > self.max_side:
            raise GeneratorError("segmentation: min_side must be <= max_side")
        self.max_shapes = int_param(params, "max_shapes", 8)
        try:
            self.png_share = float(params.get("png_share", "0.5"))
        except ValueError:
            raise GeneratorError("segmentation: --param png_share must be a number in [0, 1]") from None
        self.effort = params.get("effort", "auto")
        self.exits = _exits(self.effort)

    def _effort(self, request: object, index: int) -> None:
        if not self.exits:
            request.effort.auto.SetInParent()  # type: ignore[attr-defined]
        else:
            request.effort.exit_layer = self.exits[index % len(self.exits)]  # type: ignore[attr-defined]

    async def build(self, channel: grpc.aio.Channel, rng: np.random.Generator, size: int) -> RequestPool:
        from infersuite.protos import segmentation_pb2

        payloads, shapes = [], []
        # Images are costly to draw: make up to 64 distinct ones and cycle them with new efforts.
        images = []
        for _ in range(min(size, 64)):
            height, width = (int(v) for v in rng.integers(self.min_side, self.max_side + 1, 2))
            difficulty = rng.random()
            images.append(synthetic_image(rng, height, width, 1 + int(difficulty * (self.max_shapes - 1)),
                                          noise=5 + 45 * difficulty))
        for index in range(size):
            image = images[index % len(images)]
            request = segmentation_pb2.SegmentRequest(mask_encoding=segmentation_pb2.MASK_ENCODING_RAW)
            if rng.random() < self.png_share:
                request.encoded = _png(image)
            else:
                request.raw.pixels, request.raw.height, request.raw.width, request.raw.channels = (
                    image.tobytes(), image.shape[0], image.shape[1], 3)
            self._effort(request, index)
            payloads.append(request.SerializeToString())
            shapes.append(ImageShape(image.shape[0], image.shape[1]))
        description = {"sides": [self.min_side, self.max_side], "max_shapes": self.max_shapes,
                       "png_share": self.png_share, "effort": self.effort, "distinct_images": len(images)}
        return RequestPool("/infersuite.segmentation.v1.SegmentationService/Segment", payloads, shapes,
                           check_segment, description)


def check_segment(shape: ImageShape, response: bytes) -> str | None:
    from infersuite.protos import segmentation_pb2

    answer = segmentation_pb2.SegmentResponse.FromString(response)
    if (answer.height, answer.width) != (shape.height, shape.width):
        return "segmentation: mask size differs from the image"
    if answer.mask_encoding != segmentation_pb2.MASK_ENCODING_RAW or len(answer.mask) != shape.height * shape.width:
        return "segmentation: mask is not height x width raw class ids"
    if answer.class_names and max(answer.mask) >= len(answer.class_names):
        return "segmentation: class id outside class_names"
    if answer.exit_layer < 1:
        return "segmentation: exit_layer < 1"
    if not 0 < answer.gflops <= answer.gflops_full_depth * (1 + 1e-6):
        return "segmentation: gflops outside (0, full depth]"
    return None


register("segmentation", "Segment: synthetic images 64..256 px of mixed difficulty, PNG or raw "
         "(--param min_side, max_side, max_shapes, png_share, effort=auto|exit:N|exits:2,4)")(SegmentationGenerator)
