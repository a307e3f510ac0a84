"""The one log-mel front end of the audio family, a torch module that lives INSIDE every exported
graph, so training and serving cannot drift apart (the service sends raw 32 kHz windows).

PaSST's front end (Koutini et al., section 3): 32 kHz audio, 25 ms Hann window (800 samples),
10 ms hop (320 samples), 1024-point DFT, 128 mel bins up to 16 kHz, log power. The STFT is a
matrix product with a fixed real DFT basis (frames x basis) instead of `torch.stft`: it exports
to plain MatMul nodes that every runtime runs fast, and the frames are `unfold`-ed without centre
padding so a window that starts at a multiple of the hop gives exactly the frames of the longer
clip it was cut from (training precomputes clip spectrograms and crops them).

Per-window level normalisation (subtract the window's peak log-mel, then scale) makes the
embeddings invariant to input gain, which the synthetic data randomises.

Finite on every finite input, by construction (silence, one click, 1e-30, 1e20, denormals):
each window is first scaled to a peak amplitude of 1 (the peak clamped from below at
`min_amplitude`), which changes nothing downstream of the level normalisation but keeps the
power spectrum inside float32 (1e20 squared overflows, 1e-30 squared underflows); the mel power
is then clamped from below at `min_power` before the log. Both guards are Max/Clip nodes in the
graph: an additive guard (`x + 1e-12`) is folded away by onnxscript's optimiser (it drops
additions of 1e-8 or less), and the graph then computes log(0) = -inf and -inf - -inf = NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class FrontEndConfig:
    sample_rate: int = 32000  # Hz; the service resamples everything to this
    window_samples: int = 32000  # samples per model window (1 s): the graphs' fixed input length
    win_length: int = 800  # STFT window, 25 ms
    hop_length: int = 320  # STFT hop, 10 ms
    n_fft: int = 1024  # DFT size (the 800-sample window is zero-padded to it)
    n_mels: int = 128  # mel bins
    f_min: float = 0.0  # Hz
    f_max: float = 16000.0  # Hz
    floor_db: float = -80.0  # log-mel values below (peak - 80 dB) are clipped
    scale_db: float = 20.0  # normalised log-mel = (dB - peak) / scale_db
    min_amplitude: float = 1e-30  # a window whose peak |sample| is below this counts as (near) silence
    min_power: float = 1e-12  # mel power floor before the log: -120 dB under a full-scale window

    @property
    def frames(self) -> int:
        """STFT frames in one model window (no centre padding)."""
        return (self.window_samples - self.win_length) // self.hop_length + 1


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + hz / 700.0)  # HTK mel scale


def mel_filterbank(config: FrontEndConfig) -> np.ndarray:
    """Triangular HTK mel filters -> (n_fft // 2 + 1, n_mels), float64."""
    bins = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
    edges_mel = np.linspace(_hz_to_mel(np.array(config.f_min)), _hz_to_mel(np.array(config.f_max)), config.n_mels + 2)
    edges = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None)


def dft_basis(config: FrontEndConfig) -> np.ndarray:
    """Hann-windowed real DFT basis -> (win_length, 2 * (n_fft // 2 + 1)): [cos | -sin]."""
    n = np.arange(config.win_length)
    window = 0.5 - 0.5 * np.cos(2.0 * math.pi * n / config.win_length)  # periodic Hann
    k = np.arange(config.n_fft // 2 + 1)
    phase = 2.0 * math.pi * np.outer(n, k) / config.n_fft  # (win, K)
    return np.concatenate([np.cos(phase), -np.sin(phase)], axis=1) * window[:, None]


class LogMel(nn.Module):
    """(B, samples) float waveform -> (B, 1, n_mels, frames) normalised log-mel."""

    basis: torch.Tensor  # (win_length, 2K) buffers, typed for mypy
    mel: torch.Tensor  # (K, n_mels)

    def __init__(self, config: FrontEndConfig | None = None):
        super().__init__()
        self.config = config = config or FrontEndConfig()
        self.register_buffer("basis", torch.from_numpy(dft_basis(config)).float(), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(config)).float(), persistent=False)

    def frames(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, T, win_length) overlapping frames from hop-sized chunks: slices and a
        concat export to copies, where `unfold` exports to a Gather that cost ~15% of the graph."""
        c = self.config
        count = (waveform.shape[1] - c.win_length) // c.hop_length + 1
        span = -(-c.win_length // c.hop_length)  # chunks one frame touches
        padded = F.pad(waveform, (0, (count + span - 1) * c.hop_length - waveform.shape[1]))
        chunks = padded.reshape(waveform.shape[0], count + span - 1, c.hop_length)  # (B, T + span - 1, hop)
        parts = [chunks[:, i:i + count] for i in range(span)]
        parts[-1] = parts[-1][..., :c.win_length - (span - 1) * c.hop_length]
        return torch.cat(parts, dim=-1)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        frames = self._normalised_frames(waveform)  # (B, T, win), |sample| <= 1
        spectrum = frames @ self.basis  # (B, T, 2K)
        real, imag = spectrum.chunk(2, dim=-1)  # (B, T, K) each
        return self._normalised_log_mel(real * real + imag * imag)

    def fft(self, waveform: torch.Tensor) -> torch.Tensor:
        """`forward`'s values (to float rounding) by torch.fft.rfft instead of the DFT product the exported graph
        needs: ~10x less CPU on the 1,024-point spectrum, for features computed offline (fine-tuning's windows).
        Not exportable; the served graphs keep `forward`."""
        c = self.config
        window = torch.hann_window(c.win_length, periodic=True, dtype=waveform.dtype)
        spectrum = torch.fft.rfft(self._normalised_frames(waveform) * window, n=c.n_fft)  # (B, T, K)
        return self._normalised_log_mel(spectrum.real ** 2 + spectrum.imag ** 2)

    def _normalised_frames(self, waveform: torch.Tensor) -> torch.Tensor:
        peak_amplitude = waveform.abs().amax(dim=1, keepdim=True).clamp(min=self.config.min_amplitude)  # (B, 1)
        return self.frames(waveform / peak_amplitude)

    def _normalised_log_mel(self, power: torch.Tensor) -> torch.Tensor:
        """(B, T, K) power spectrum -> (B, 1, M, T) normalised log-mel."""
        c = self.config
        mel_db = 10.0 * torch.log10((power @ self.mel).clamp(min=c.min_power))  # (B, T, M)
        peak = mel_db.amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        normalised = (torch.maximum(mel_db, peak + c.floor_db) - peak) / c.scale_db
        return normalised.transpose(1, 2).unsqueeze(1)  # (B, 1, M, T)


def log_mel_reference(waveform: np.ndarray, config: FrontEndConfig | None = None) -> np.ndarray:
    """An independent numpy implementation (np.fft.rfft) of `LogMel` for the parity test:
    (B, samples) -> (B, 1, n_mels, frames), float64."""
    c = config or FrontEndConfig()
    waveform = waveform.astype(np.float64)
    waveform = waveform / np.maximum(np.abs(waveform).max(axis=1, keepdims=True), c.min_amplitude)
    count = (waveform.shape[1] - c.win_length) // c.hop_length + 1
    index = np.arange(c.win_length)[None, :] + c.hop_length * np.arange(count)[:, None]  # (T, win)
    window = 0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(c.win_length) / c.win_length)
    spectrum = np.fft.rfft(waveform[:, index] * window, n=c.n_fft)  # (B, T, K)
    mel_db = 10.0 * np.log10(np.maximum(np.abs(spectrum) ** 2 @ mel_filterbank(c), c.min_power))
    peak = mel_db.max(axis=(1, 2), keepdims=True)
    normalised = (np.maximum(mel_db, peak + c.floor_db) - peak) / c.scale_db
    return normalised.transpose(0, 2, 1)[:, None]


class WaveformEmbedder(nn.Module):
    """Shared face of the audio embedders: one window of waveform in, one embedding out, through
    the in-graph log-mel front end. Subclasses set `front_config`, `front_end` and define `embed`.
    Carries the export metadata exporters/onnx_export.py reads."""

    input_names: ClassVar[tuple[str, ...]] = ("waveform",)
    output_names: ClassVar[tuple[str, ...]] = ("embedding",)
    front_config: FrontEndConfig
    front_end: LogMel

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.embed(self.front_end(waveform))

    def dynamic_shapes(self) -> dict[str, Any]:
        return {"waveform": {0: torch.export.Dim("batch", min=1, max=4096)}}

    def example_inputs(self, batch: int = 2, generator: torch.Generator | None = None) -> tuple[torch.Tensor]:
        return (torch.randn(batch, self.front_config.window_samples, generator=generator) * 0.1,)


class LogMelStatistics(nn.Module):
    """The no-learning reference: per mel bin mean and std over time of the log-mel of a waveform."""

    def __init__(self, config: FrontEndConfig | None = None) -> None:
        super().__init__()
        self.front_end = LogMel(config)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mel = self.front_end(waveform)[:, 0]  # (B, M, T)
        return torch.cat([mel.mean(-1), mel.std(-1)], dim=-1)
