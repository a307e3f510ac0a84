"""Polyphase resampling to the model rate (scipy.signal.resample_poly), whole or streamed.

`StreamingResampler` gives, chunk by chunk, exactly the samples `resample_poly` gives for the
whole signal. resample_poly's output n is a dot product of its FIR filter (2 * half_len + 1
taps in the upsampled domain, half_len = 10 * max(up, down), scipy's default) with the inputs k
where |k * up - n * down| <= half_len. So an output is final once those inputs have arrived,
and cutting the input at a multiple of `down` shifts the outputs by a whole number (`up` per
`down` inputs): the streamer re-runs resample_poly over a short tail and keeps the final part.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from infersuite.services.audio.samples import flush_denormals


def ratio(source_rate: int, target_rate: int) -> tuple[int, int]:
    """(up, down), reduced."""
    fraction = Fraction(target_rate, source_rate)
    return fraction.numerator, fraction.denominator


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Whole-signal polyphase resampling -> float32 (a copy-free pass-through at the same rate)."""
    up, down = ratio(source_rate, target_rate)
    if up == down == 1:
        return samples.astype(np.float32, copy=False)
    return flush_denormals(resample_poly(samples, up, down).astype(np.float32))  # tiny inputs filter to denormals


class StreamingResampler:
    def __init__(self, source_rate: int, target_rate: int):
        self.up, self.down = ratio(source_rate, target_rate)
        self.half_len = 10 * max(self.up, self.down)
        self._buffer = np.zeros(0, np.float32)  # inputs from global index self._start on
        self._start = 0  # always a multiple of down
        self._received = 0  # inputs so far
        self._emitted = 0  # outputs so far

    @property
    def passthrough(self) -> bool:
        return self.up == self.down == 1

    def push(self, samples: np.ndarray) -> np.ndarray:
        """New input -> the outputs that no later input can change."""
        if self.passthrough:
            return samples.astype(np.float32, copy=False)
        self._buffer = np.concatenate([self._buffer, samples.astype(np.float32, copy=False)])
        self._received += samples.size
        # output n needs inputs up to (n * down + half_len) / up; one extra input of margin
        final = max(0, (self._received * self.up - self.half_len - self.up) // self.down)
        return self._emit(final)

    def finish(self) -> np.ndarray:
        """The remaining outputs (the signal is zero after its end, as in resample_poly)."""
        if self.passthrough:
            return np.zeros(0, np.float32)
        return self._emit(-(-self._received * self.up // self.down))

    def _emit(self, count: int) -> np.ndarray:
        if count <= self._emitted:
            return np.zeros(0, np.float32)
        local = resample_poly(self._buffer, self.up, self.down)
        offset = self._start // self.down * self.up  # global index of local output 0
        out = flush_denormals(local[self._emitted - offset:count - offset].astype(np.float32))
        self._emitted = count
        # the next output needs inputs from (n * down - half_len) / up on; keep one extra
        keep_from = max(0, (self._emitted * self.down - self.half_len) // self.up - 1)
        keep_from -= keep_from % self.down
        if keep_from > self._start:
            self._buffer = self._buffer[keep_from - self._start:]
            self._start = keep_from
        return out
