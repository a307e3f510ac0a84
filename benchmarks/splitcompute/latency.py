"""End-to-end latency for the splitcompute report, both paths measured in one run on this machine:

- split: the edge SDK (encoder graph, quantize, range-code) -> a real splitcompute server on
  port 0 (decode + decoder/tail graph) over loopback gRPC;
- JPEG: Pillow encodes on the edge; the server decodes it and runs the teacher graph, timed
  in-process, plus the measured loopback gRPC round trip of an empty call.

The link is simulated: transfer = bytes * 8 / rate, added to the measured times (no extra
propagation delay; gRPC/HTTP2 framing, the same tens of bytes for both paths, is not counted).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from benchmarks.splitcompute.rates import compress, decompress
from infersuite.services.runtime import RuntimeSettings, build_server
from infersuite.services.splitcompute import SplitComputeService
from infersuite.services.splitcompute.edge import EdgeDevice

LINKS_MBIT = (1.0, 10.0)


def _median(values: list[float]) -> float:
    return float(np.median(values))


def _split_path(bundle: Path, target: str, images_hwc: np.ndarray) -> dict[str, float]:
    with EdgeDevice(bundle, target) as device:
        device.classify(images_hwc[0])  # warm-up
        empty = []
        for _ in range(len(images_hwc)):
            start = time.perf_counter()
            device.server_codec_version()
            empty.append(time.perf_counter() - start)
        results = [device.classify(image) for image in images_hwc]
    edge = [sum(v for k, v in r.stage_seconds.items() if k != "round_trip") for r in results]
    return {"edge_s": _median(edge), "server_s": _median([r.stage_seconds["round_trip"] for r in results]),
            "bytes": float(np.mean([r.payload_bytes for r in results])), "empty_rpc_s": _median(empty)}


def _jpeg_path(teacher_onnx: Path, images_hwc: np.ndarray, options: dict[str, Any]) -> dict[str, float]:
    session = ort.InferenceSession(str(teacher_onnx), providers=["CPUExecutionProvider"])
    edge, server, sizes = [], [], []
    for image in images_hwc:
        start = time.perf_counter()
        data = compress(image, "JPEG", **options)
        encoded = time.perf_counter()
        pixels = decompress(data)[None].astype(np.float32) / 255.0
        session.run(["logits"], {"image": pixels})
        edge.append(encoded - start)
        server.append(time.perf_counter() - encoded)
        sizes.append(len(data))
    return {"edge_s": _median(edge), "server_compute_s": _median(server), "bytes": float(np.mean(sizes))}


async def _measure(repository: Path, teacher_onnx: Path, images_hwc: np.ndarray, options: dict[str, Any]) -> dict:
    settings = RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1", model_repository=repository)
    server, port = await build_server(settings, [SplitComputeService()])
    await server.start()
    try:
        await server.wait_ready(timeout=60)
        bundle = repository / "splitcompute-encoder-fp32" / "1"
        split = await asyncio.to_thread(_split_path, bundle, f"127.0.0.1:{port}", images_hwc)
    finally:
        await server.stop(0)
    jpeg = _jpeg_path(teacher_onnx, images_hwc, options)
    jpeg["server_s"] = jpeg["server_compute_s"] + split["empty_rpc_s"]
    for path in (split, jpeg):
        for mbit in LINKS_MBIT:
            path[f"transfer_{mbit:g}_s"] = path["bytes"] * 8 / (mbit * 1e6)
            path[f"total_{mbit:g}_s"] = path["edge_s"] + path[f"transfer_{mbit:g}_s"] + path["server_s"]
    return {"split": split, "jpeg": jpeg, "jpeg_options": options, "images": len(images_hwc)}


def measure_latency(repository: Path, teacher_onnx: Path, images: np.ndarray, options: dict[str, Any]) -> dict:
    """images (N, 3, H, W) uint8 -> medians per stage for both paths, at every simulated link;
    `options` = the JPEG's Pillow options, quality included."""
    return asyncio.run(_measure(repository, teacher_onnx, images.transpose(0, 2, 3, 1).copy(), options))
