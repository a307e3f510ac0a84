"""The edge SDK: what a device runs. onnxruntime + constriction + numpy (+ grpcio to send);
no torch, no server code.

    from infersuite.services.splitcompute.edge import EdgeDevice
    with EdgeDevice("bundle/splitcompute-encoder-fp32/1", "server:50051") as device:
        result = device.classify(image)          # (H, W, 3) uint8, e.g. np.asarray(PIL image)
        result = device.classify(photo, fit=True)  # any size: fitted as at training (imaging.py)
        print(result.top_class_name, result.payload_bytes, result.stage_seconds)

A bundle is the encoder graph's version directory of the model repository: model.onnx plus
meta.json, which carries the codec (version + CDF tables) the server decodes with.
`EdgeEncoder` alone turns images into payloads without any network (tests, benchmarks).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Unpack

import numpy as np
import onnxruntime as ort

from infersuite.protos import splitcompute_pb2, splitcompute_pb2_grpc
from infersuite.services.client import BlockingClient, BlockingClientOptions
from infersuite.services.splitcompute import wire
from infersuite.services.splitcompute.client import Classification, SplitComputeClientError, classification_from_proto
from infersuite.services.splitcompute.codec import Codec
from infersuite.services.splitcompute.imaging import fit_image


@dataclass(frozen=True)
class EncodedImage:
    payload: bytes  # one wire frame, ready to send
    symbols: np.ndarray  # (C, h, w) int32, what was coded
    estimated_bits: float  # the prior's -log2 p of the symbols
    stage_seconds: dict[str, float]  # "encoder", "quantize", "entropy_code"

    @property
    def payload_bytes(self) -> int:
        return len(self.payload)

    @property
    def body_bytes(self) -> int:
        return len(self.payload) - wire.HEADER_BYTES


@dataclass(frozen=True)
class EdgeResult:
    classification: Classification
    payload_bytes: int
    stage_seconds: dict[str, float] = field(default_factory=dict)  # encoder, quantize, entropy_code, round_trip

    @property
    def top_class(self) -> int:
        return self.classification.top_class

    @property
    def top_class_name(self) -> str:
        return self.classification.top_class_name


def as_model_input(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) or (3, H, W) uint8, or a (N, 3, H, W) batch -> float32 (N, 3, H, W) in [0, 1]."""
    batch = image if image.ndim == 4 else image[None]
    if batch.shape[-1] == 3 and batch.shape[1] != 3:
        batch = batch.transpose(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)
    if batch.shape[1:] != (3, size, size):
        raise ValueError(f"image has shape {image.shape}; the encoder takes {size}x{size} RGB")
    return batch.astype(np.float32) / 255.0 if batch.dtype == np.uint8 else batch.astype(np.float32)


class EdgeEncoder:
    """Encoder graph + codec: image -> payload, timing each stage."""

    def __init__(self, bundle: Path | str, *, threads: int = 1):
        bundle = Path(bundle)
        meta = json.loads((bundle / "meta.json").read_text())
        self.codec = Codec.from_meta(meta)
        self.image_size = int(meta["image_size"])
        self.class_names = list(meta.get("class_names", []))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(bundle / "model.onnx"), options,
                                             providers=["CPUExecutionProvider"])

    @property
    def codec_version(self) -> int:
        return self.codec.version

    def latents(self, images: np.ndarray) -> np.ndarray:
        """Float latents (N, C, h, w) of a batch, no coding (reference pipelines, benchmarks)."""
        return self._session.run(["latent"], {"image": as_model_input(images, self.image_size)})[0]

    def encode(self, image: np.ndarray, *, fit: bool = False) -> EncodedImage:
        """One image -> one frame. fit=True takes an image of any size and fits it to the model's input
        the way the training images were (infersuite/services/splitcompute/imaging.py); else it must be that size."""
        start = time.perf_counter()
        if fit:
            image = fit_image(image, self.image_size)
        latent = self.latents(image)[0]  # (C, h, w)
        encoded = time.perf_counter()
        symbols = self.codec.quantize(latent)
        quantized = time.perf_counter()
        payload = wire.pack(self.codec.version, self.codec.latent_shape, self.codec.encode(symbols))
        coded = time.perf_counter()
        stages = {"encoder": encoded - start, "quantize": quantized - encoded, "entropy_code": coded - quantized}
        return EncodedImage(payload, symbols, self.codec.estimated_bits(symbols), stages)


class EdgeDevice(BlockingClient):
    """Encoder + a gRPC channel to the splitcompute service (blocking calls, as a device loop wants);
    options (security, timeout_s=5.0, ...): `infersuite.services.client.BlockingClientOptions`."""

    error = SplitComputeClientError

    def __init__(self, bundle: Path | str, target: str, *, threads: int = 1, **options: Unpack[BlockingClientOptions]):
        self.encoder = EdgeEncoder(bundle, threads=threads)
        super().__init__(target, **options)
        self._stub = splitcompute_pb2_grpc.SplitComputeServiceStub(self._channel)

    def server_codec_version(self, *, timeout_s: float | None = None) -> int:
        """The server's current codec version (compare with `self.encoder.codec_version`)."""
        return self._unary(self._stub.GetCodec, splitcompute_pb2.GetCodecRequest(), timeout_s).codec_version

    def send(self, payload: bytes, *, timeout_s: float | None = None) -> Classification:
        request = splitcompute_pb2.ClassifyRequest(payload=payload)
        return classification_from_proto(self._unary(self._stub.Classify, request, timeout_s))

    def classify(self, image: np.ndarray, *, fit: bool = False, timeout_s: float | None = None) -> EdgeResult:
        """Encode, code, send one image; report bytes and the time of every stage. timeout_s bounds the call;
        fit=True: an image of any size, fitted as at training (`EdgeEncoder.encode`)."""
        self._timeout(timeout_s)  # a bad timeout fails before the encoder runs
        encoded = self.encoder.encode(image, fit=fit)
        start = time.perf_counter()
        classification = self.send(encoded.payload, timeout_s=timeout_s)
        stages = {**encoded.stage_seconds, "round_trip": time.perf_counter() - start}
        return EdgeResult(classification, encoded.payload_bytes, stages)
