"""Segment a synthetic 64x64 scene with the adaptive-depth gate (README: "Segmentation in a few lines").

    python -m infersuite.examples.segmentation_segment  # INFERSUITE_TARGET=host:port, default localhost:50051
"""

import asyncio
import io
import os

import numpy as np
from PIL import Image

from infersuite.clients import SegmentationClient, security_from_env


def scene_png() -> bytes:
    pixels = np.full((64, 64, 3), 30, np.uint8)
    pixels[16:48, 16:48] = (51, 191, 64)  # one square in the "square" class colour on a dark background
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


async def main() -> None:
    target = os.environ.get("INFERSUITE_TARGET", "localhost:50051")
    async with SegmentationClient(target, security=security_from_env()) as seg:
        auto = await seg.segment(scene_png())  # the gate picks the depth
        budget = await seg.segment(scene_png(), gflops_budget=0.05)  # or a compute budget / exit_layer=...
    print("mask:", auto.mask.shape, "classes present:", sorted(set(np.unique(auto.mask).tolist())))
    print("exit layer:", auto.exit_layer, f"GFLOPs {auto.gflops:.4f} of {auto.gflops_full_depth:.4f}")
    print("with a budget: exit layer", budget.exit_layer)


if __name__ == "__main__":
    asyncio.run(main())
