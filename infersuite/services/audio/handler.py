"""Audio embedding domain logic (no grpc): decode + validate, resample to 32 kHz, cut into 1 s
windows, embed them in batches, and pool (scene) or place them on timestamps.

A long clip never runs one window at a time: windows go to the model `batch_windows` at a time
(dim 0 of the graph is the batch). A stream embeds, at each chunk, the timestamps whose whole
window has arrived, in one batch, and the rest when the client half-closes; it resamples with
`StreamingResampler`, so its embeddings equal those of EmbedTimestamps on the same audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersuite.services.audio import windows
from infersuite.services.audio.decoding import DecodedAudio, check_layout, decode_raw, decode_wav, samples_from_f32le
from infersuite.services.audio.resampling import StreamingResampler, resample
from infersuite.services.audio.settings import AudioSettings
from infersuite.services.runtime import InvalidArgument, Runtime
from infersuite.services.runtime.lifecycle import Snapshot
from infersuite.services.runtime.model_manager import ModelSet

MODEL_SAMPLE_RATE = 32000
DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


@dataclass(frozen=True)
class AudioInput:
    wav: bytes | None = None  # a WAV file, or
    raw: bytes | None = None  # float32 little-endian interleaved samples
    sample_rate: int = 0  # of raw
    channels: int = 1  # of raw


@dataclass(frozen=True)
class EmbedQuery:
    audio: AudioInput
    embedder: str = ""  # "passt" | "bow" | "" (the default)
    hop_ms: float = 0.0  # timestamps only; 0 = the default


@dataclass(frozen=True)
class SceneResult:
    embedding: np.ndarray  # (D,) float32
    duration_s: float
    model: str
    model_version: str


@dataclass(frozen=True)
class TimestampResult:
    embeddings: np.ndarray  # (T, D) float32
    timestamps_ms: np.ndarray  # (T,) float64
    duration_s: float
    model: str
    model_version: str


@dataclass(frozen=True)
class StreamOptions:
    sample_rate: int
    channels: int = 1
    embedder: str = ""
    hop_ms: float = 0.0


def window_sizes(models: ModelSet) -> dict[str, int]:
    """Each embedder's window in model-rate samples (meta.json), rebuilt with every model set."""
    sizes = {name: int(models.get(name).meta.get("window_samples", MODEL_SAMPLE_RATE)) for name in models.names}
    if bad := [name for name, size in sizes.items() if size <= 0]:
        raise ValueError(f"window_samples of {', '.join(bad)} must be positive")
    return sizes


class AudioHandler:
    def __init__(self, settings: AudioSettings, runtime: Runtime):
        self.settings = settings
        self._served = runtime.service_models("audio", window_sizes)
        self.executor = runtime.executor  # decoding, resampling and windowing never run on the event loop
        self._processed = runtime.metrics.histogram(
            "infersuite_audio_input_duration_seconds",
            "Seconds of audio processed per request (per chunk on streams); _sum is the total audio processed.",
            ["method", "embedder"], buckets=DURATION_BUCKETS)
        self.model_sample_rate = MODEL_SAMPLE_RATE

    @property
    def model_names(self) -> dict[str, str]:
        return {"passt": self.settings.passt_model, "bow": self.settings.bow_model}

    def model_name(self, embedder: str) -> tuple[str, str]:
        embedder = embedder or self.settings.default_embedder
        if embedder not in self.model_names:
            raise InvalidArgument(f"embedder {embedder!r} is unknown: use one of {', '.join(self.model_names)}")
        return embedder, self.model_names[embedder]

    def hop(self, hop_ms: float) -> float:
        hop = hop_ms or self.settings.default_hop_ms
        if not np.isfinite(hop) or hop < self.settings.min_hop_ms:
            raise InvalidArgument(f"hop_ms={hop_ms:g} must be at least {self.settings.min_hop_ms:g} ms")
        return hop

    def _decode(self, audio: AudioInput) -> DecodedAudio:
        if audio.wav is not None:
            return decode_wav(audio.wav, self.settings)
        if audio.raw is not None:
            return decode_raw(audio.raw, audio.sample_rate, audio.channels, self.settings)
        raise InvalidArgument("audio is empty: set audio.wav or audio.raw")

    async def _model_audio(self, audio: AudioInput, method: str, embedder: str) -> tuple[np.ndarray, float]:
        decoded = await self.executor.run(self._decode, audio)
        duration = decoded.samples.size / decoded.sample_rate
        self._processed.labels(method, embedder).observe(duration)
        return await self.executor.run(resample, decoded.samples, decoded.sample_rate, self.model_sample_rate), duration

    async def embed_windows(self, models: ModelSet, model: str, batch: np.ndarray) -> np.ndarray:
        """(N, window) -> (N, D), `batch_windows` windows per execution."""
        parts = [(await models.infer(model, {"waveform": batch[part]}))["embedding"]
                 for part in windows.batched(len(batch), self.settings.batch_windows)]
        return np.concatenate(parts)

    @property
    def timestamp_samples(self) -> int:
        """Model-rate samples of audio a timestamp embedding sees (centred)."""
        return round(self.settings.timestamp_window_ms * self.model_sample_rate / 1000)

    async def embed_scene(self, query: EmbedQuery) -> SceneResult:
        embedder, name = self.model_name(query.embedder)
        audio, duration = await self._model_audio(query.audio, "EmbedScene", embedder)
        with self._served.use() as snapshot:  # one version of the model for every window
            batch = await self.executor.run(windows.scene_windows, audio, snapshot.state[name])
            embeddings = await self.embed_windows(snapshot.models, name, batch)
        return SceneResult(embeddings.mean(axis=0), duration, name, snapshot.models.get(name).version)

    async def embed_timestamps(self, query: EmbedQuery) -> TimestampResult:
        embedder, name = self.model_name(query.embedder)
        hop = self.hop(query.hop_ms)
        decoded = await self.executor.run(self._decode, query.audio)
        count = windows.timestamp_count(decoded.samples.size, decoded.sample_rate, hop)
        if count > self.settings.max_timestamps:  # checked before resampling or any model run
            raise InvalidArgument(f"hop_ms={hop:g} gives {count} timestamps for this audio, more than the "
                                  f"maximum of {self.settings.max_timestamps}: use a longer hop")
        duration = decoded.samples.size / decoded.sample_rate
        self._processed.labels("EmbedTimestamps", embedder).observe(duration)
        audio = await self.executor.run(resample, decoded.samples, decoded.sample_rate, self.model_sample_rate)
        stamps = windows.timestamps_ms(count, hop)
        centres = windows.centre_sample(stamps, self.model_sample_rate)
        with self._served.use() as snapshot:  # one version of the model for every window
            size, parts = snapshot.state[name], []
            for part in windows.batched(count, self.settings.batch_windows):
                batch = await self.executor.run(windows.centred_windows, audio, 0, centres[part], size,
                                                self.timestamp_samples)
                parts.append(await self.embed_windows(snapshot.models, name, batch))
        return TimestampResult(np.concatenate(parts), stamps, duration, name, snapshot.models.get(name).version)

    def open_stream(self, options: StreamOptions) -> TimestampStream:
        embedder, name = self.model_name(options.embedder)
        check_layout(self.settings, options.sample_rate, options.channels or 1, 1, "config")
        return TimestampStream(self, embedder, name, self.hop(options.hop_ms), options, self._served.use())


class TimestampStream:
    """One StreamTimestamps call: `push(bytes)` and `finish()` return the newly ready timestamps.
    The whole stream runs on the model set it opened on (a reload waits for it, up to its drain
    period); `close()` releases it."""

    def __init__(self, handler: AudioHandler, embedder: str, model: str, hop_ms: float, options: StreamOptions,
                 snapshot: Snapshot[dict[str, int]]):
        self._handler, self.embedder, self.model, self.hop_ms = handler, embedder, model, hop_ms
        self._snapshot = snapshot.__enter__()
        self._closed = False
        self.model_version = snapshot.models.get(model).version
        self.channels, self.sample_rate = options.channels or 1, options.sample_rate
        self._rate = handler.model_sample_rate
        self._resampler = StreamingResampler(self.sample_rate, self._rate)
        self._window = snapshot.state[model]
        self._half = min(handler.timestamp_samples, self._window) // 2  # audio a timestamp needs on each side
        self._audio = np.zeros(0, np.float32)  # model-rate samples from global index self._audio_start
        self._audio_start = 0
        self._length = 0  # model-rate samples so far
        self.received_frames = 0  # input-rate frames so far
        self._next = 0  # index of the next timestamp to embed

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._snapshot.__exit__(None, None, None)

    @property
    def received_s(self) -> float:
        return self.received_frames / self.sample_rate

    def _resample_chunk(self, data: bytes) -> np.ndarray:
        """Checks, decodes and resamples one chunk (on the runtime's executor: chunks can be MBs)."""
        return self._resampler.push(self._accept(data))

    def _accept(self, data: bytes) -> np.ndarray:
        frames = len(data) // (4 * self.channels)
        limit = self._handler.settings.max_duration_s
        if (self.received_frames + frames) / self.sample_rate > limit:
            raise InvalidArgument(f"the stream exceeds the maximum duration of {limit:g} s")
        samples = samples_from_f32le(data, self.channels, "samples_f32le")
        self.received_frames += frames
        self._handler._processed.labels("StreamTimestamps", self.embedder).observe(frames / self.sample_rate)
        return samples

    def _append(self, samples: np.ndarray) -> None:
        self._audio = np.concatenate([self._audio, samples])
        self._length += samples.size

    async def _embed_until(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Embeds timestamps [next, count) in batches; drops audio no later window needs."""
        stamps = windows.timestamps_ms(count - self._next, self.hop_ms, first=self._next)
        centres = windows.centre_sample(stamps, self._rate)
        parts = []
        for part in windows.batched(len(centres), self._handler.settings.batch_windows):
            batch = await self._handler.executor.run(windows.centred_windows, self._audio, self._audio_start,
                                                     centres[part], self._window, self._handler.timestamp_samples)
            parts.append(await self._handler.embed_windows(self._snapshot.models, self.model, batch))
        self._next = count
        keep_from = int(windows.centre_sample(np.array([self._next * self.hop_ms]), self._rate)[0]) - self._window // 2
        if keep_from > self._audio_start:
            self._audio = self._audio[keep_from - self._audio_start:]
            self._audio_start = keep_from
        width = parts[0].shape[1] if parts else 0
        return (np.concatenate(parts) if parts else np.zeros((0, width), np.float32)), stamps

    async def push(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        self._append(await self._handler.executor.run(self._resample_chunk, data))
        # timestamp k is ready when the audio it sees, [c_k - half, c_k + half), has fully arrived
        ready_ms = (self._length - self._half) * 1000.0 / self._rate
        count = int(np.floor(ready_ms / self.hop_ms + 1e-9)) + 1 if ready_ms >= 0 else 0
        while count > self._next and windows.centre_sample(
                np.array([(count - 1) * self.hop_ms]), self._rate)[0] + self._half > self._length:
            count -= 1  # rounding of centre samples
        if count <= self._next:
            return np.zeros((0, 0), np.float32), np.zeros(0)
        return await self._embed_until(count)

    async def finish(self) -> tuple[np.ndarray, np.ndarray]:
        if self.received_frames == 0:
            raise InvalidArgument("the stream carried no samples (zero-length audio)")
        self._append(await self._handler.executor.run(self._resampler.finish))
        count = windows.timestamp_count(self.received_frames, self.sample_rate, self.hop_ms)
        return await self._embed_until(count)
