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

from infersuite.services.runtime import FailedPrecondition, InvalidArgument, Runtime
from infersuite.services.runtime.model_manager import ModelSet
from infersuite.services.splitcompute import wire
from infersuite.services.splitcompute.codec import Codec, CodecError
from infersuite.services.splitcompute.settings import SplitComputeSettings

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


@dataclass(frozen=True)
class CodecTables:
    """What the service derives from its model set (rebuilt on every load or swap, with the set)."""

    codecs: dict[int, tuple[Codec, str]]  # codec version -> (codec, the server graph it feeds)
    current: Codec  # the default server graph's codec: what GetCodec announces
    class_names: list[str]


def codec_tables(models: ModelSet, default: str, names: list[str]) -> CodecTables:
    """Indexes every server graph's codec by version; refuses a set whose tables cannot serve."""
    codecs: dict[int, tuple[Codec, str]] = {}
    for name in names:
        model = models.get(name)
        codec = Codec.from_meta(model.meta)
        if codec.version in codecs:
            raise ValueError(f"{name} and {codecs[codec.version][1]} both carry codec version {codec.version}")
        latent = next((spec.shape[1:] for spec in model.inputs if spec.name == "latent"), None)
        if latent is not None and all(d > 0 for d in latent) and tuple(latent) != codec.latent_shape:
            raise ValueError(f"{name}'s latent input {tuple(latent)} does not fit its codec's {codec.latent_shape}")
        codecs[codec.version] = (codec, name)
    meta = models.get(default).meta
    return CodecTables(codecs, Codec.from_meta(meta), list(meta.get("class_names", [])))


class SplitComputeHandler:
    def __init__(self, settings: SplitComputeSettings, runtime: Runtime):
        self._settings = settings
        self._served = runtime.service_models(
            "splitcompute", lambda models: codec_tables(models, settings.model, self.model_names))
        self._executor = runtime.executor
        self._payload_bytes = runtime.metrics.histogram(
            "infersuite_splitcompute_payload_bytes", "Size of Classify payloads (wire frames).",
            buckets=PAYLOAD_BUCKETS)
        self._decode_time = runtime.metrics.histogram(
            "infersuite_splitcompute_entropy_decode_duration_seconds", "Time to entropy-decode one payload.")

    @property
    def model_names(self) -> list[str]:
        return [self._settings.model, *self._settings.extra_models]

    @staticmethod
    def _codec_for(tables: CodecTables, frame: wire.Frame) -> tuple[Codec, str]:
        if frame.codec_version not in tables.codecs:
            held = ", ".join(str(v) for v in sorted(tables.codecs))
            raise FailedPrecondition(
                f"codec version {frame.codec_version} is not served here (this server has codec versions: {held}); "
                "update the device's encoder bundle (GetCodec names the current one)")
        codec, name = tables.codecs[frame.codec_version]
        if frame.latent_shape != codec.latent_shape:
            raise InvalidArgument(f"payload declares latent shape {frame.latent_shape} but codec version "
                                  f"{codec.version} codes {codec.latent_shape}")
        return codec, name

    def _parse(self, payload: bytes) -> wire.Frame:
        try:
            return wire.parse(payload, self._settings.max_payload_bytes, self._settings.max_latent_elements)
        except wire.WireError as err:
            raise InvalidArgument(str(err)) from None

    def _decode(self, codec: Codec, frame: wire.Frame) -> np.ndarray:
        start = time.perf_counter()
        try:
            symbols = codec.decode(frame.body)
        except CodecError as err:
            raise InvalidArgument(f"payload body: {err}") from None
        self._decode_time.observe(time.perf_counter() - start)
        return symbols

    def decode_payload(self, tables: CodecTables, payload: bytes) -> tuple[np.ndarray, Codec, str]:
        """An untrusted payload -> (symbols (C, h, w), its codec, the server graph they feed): frame
        checks, codec lookup, range decoding. CPU-bound: runs on the runtime's executor."""
        frame = self._parse(payload)
        codec, name = self._codec_for(tables, frame)
        return self._decode(codec, frame), codec, name

    async def classify(self, payload: bytes) -> ClassifyResult:
        self._payload_bytes.observe(len(payload))
        with self._served.use() as snapshot:  # the codec tables and the graph they feed, of one set
            symbols, codec, name = await self._executor.run(self.decode_payload, snapshot.state, payload)
            model = snapshot.models.get(name)
            outputs = await snapshot.models.infer(name, {"latent": symbols[None]})  # (1, C, h, w)
        probabilities = outputs["probabilities"][0]
        top = int(np.argmax(probabilities))
        names = model.meta.get("class_names", [])
        return ClassifyResult(probabilities, top, names[top] if top < len(names) else str(top), codec.version,
                              len(payload), name, model.version)

    def codec_info(self) -> CodecInfo:
        tables = self._served.current.state  # one snapshot: the announced codec is one Classify accepts
        current = tables.current
        return CodecInfo(current.version, sorted(tables.codecs), current.latent_shape, self._settings.encoder_model,
                         wire.WIRE_FORMAT, list(tables.class_names))
