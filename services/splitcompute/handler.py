"""Split-compute domain logic (no grpc): parse an untrusted frame, decode it with the CDF tables
of its codec version, run the server graph (decoder + tail).

Every codec a server graph carries (meta.json "codec") is indexed by its version. A frame whose
version is unknown is refused with FAILED_PRECONDITION listing the versions held: a device with
an old encoder must never get a silently wrong answer. Every bound is checked before decoding
(wire.parse), and the declared latent shape must equal the codec's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from services.runtime import FailedPrecondition, InvalidArgument, Runtime
from services.splitcompute import wire
from services.splitcompute.codec import Codec, CodecError
from services.splitcompute.settings import SplitComputeSettings

PAYLOAD_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 65536)


@dataclass(frozen=True)
class ClassifyResult:
    probabilities: np.ndarray  # (K,) float32
    top_class: int
    top_class_name: str
    codec_version: int
    payload_bytes: int
    model: str
    model_version: str


@dataclass(frozen=True)
class CodecInfo:
    version: int
    served_versions: list[int]
    latent_shape: tuple[int, int, int]
    encoder_model: str
    wire_format: int
    class_names: list[str]


class SplitComputeHandler:
    def __init__(self, settings: SplitComputeSettings, runtime: Runtime):
        self._settings = settings
        self._models = runtime.models
        self._codecs: dict[int, tuple[Codec, str]] | None = None  # version -> (codec, server graph)
        self._payload_bytes = runtime.metrics.histogram(
            "infersuite_splitcompute_payload_bytes", "Size of Classify payloads (wire frames).",
            buckets=PAYLOAD_BUCKETS)
        self._decode_time = runtime.metrics.histogram(
            "infersuite_splitcompute_entropy_decode_duration_seconds", "Time to entropy-decode one payload.")

    @property
    def model_names(self) -> list[str]:
        return [self._settings.model, *self._settings.extra_models]

    def _codec_index(self) -> dict[int, tuple[Codec, str]]:
        # Built on first use: models load in the background after the service registers.
        if self._codecs is None:
            codecs = {}
            for name in self.model_names:
                codec = Codec.from_meta(self._models.get(name).meta)
                codecs[codec.version] = (codec, name)
            self._codecs = codecs
        return self._codecs

    def _codec_for(self, frame: wire.Frame) -> tuple[Codec, str]:
        codecs = self._codec_index()
        if frame.codec_version not in codecs:
            held = ", ".join(str(v) for v in sorted(codecs))
            raise FailedPrecondition(
                f"codec version {frame.codec_version} is not served here (this server has codec versions: {held}); "
                "update the device's encoder bundle (GetCodec names the current one)")
        codec, name = codecs[frame.codec_version]
        if frame.latent_shape != codec.latent_shape:
            raise InvalidArgument(f"payload declares latent shape {frame.latent_shape} but codec version "
                                  f"{codec.version} codes {codec.latent_shape}")
        return codec, name

    def _decode(self, payload: bytes) -> tuple[np.ndarray, Codec, str]:
        try:
            frame = wire.parse(payload, self._settings.max_payload_bytes, self._settings.max_latent_elements)
        except wire.WireError as err:
            raise InvalidArgument(str(err)) from None
        codec, name = self._codec_for(frame)
        start = time.perf_counter()
        try:
            symbols = codec.decode(frame.body)
        except CodecError as err:
            raise InvalidArgument(f"payload body: {err}") from None
        self._decode_time.observe(time.perf_counter() - start)
        return symbols, codec, name

    async def classify(self, payload: bytes) -> ClassifyResult:
        self._payload_bytes.observe(len(payload))
        symbols, codec, name = self._decode(payload)
        model = self._models.get(name)
        outputs = await self._models.infer(name, {"latent": symbols[None]})  # (1, C, h, w)
        probabilities = outputs["probabilities"][0]
        top = int(np.argmax(probabilities))
        names = model.meta.get("class_names", [])
        return ClassifyResult(probabilities, top, names[top] if top < len(names) else str(top), codec.version,
                              len(payload), name, model.version)

    def codec_info(self) -> CodecInfo:
        codecs = self._codec_index()
        model = self._models.get(self._settings.model)
        current = Codec.from_meta(model.meta)
        return CodecInfo(current.version, sorted(codecs), current.latent_shape, self._settings.encoder_model,
                         wire.WIRE_FORMAT, list(model.meta.get("class_names", [])))
