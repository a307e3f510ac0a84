"""Sample hygiene shared by the service and the HEAR package (numpy only).

Denormal floats (|x| < 1.2e-38 in float32) are flushed to zero before any filtering or model
run: on x86 every arithmetic operation on one takes a slow microcode path, so 30 s of 1e-44
samples cost tens of times the CPU of a tone (measured in reports/audio.md). They are far below
any audible level (a 16-bit PCM step is 3e-5), so zero is what they mean.
"""

from __future__ import annotations

import numpy as np

FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32
# Larger samples are refused: the resampler's float32 filter overshoots (a full-scale square wave by
# ~2x) and would overflow to Inf near float32's 3.4e38; 1e30 leaves room and no real audio is near it.
MAX_MAGNITUDE = 1e30


def flush_denormals(samples: np.ndarray) -> np.ndarray:
    """Sets every |sample| below the smallest normal float32 to 0 (in place when writable)."""
    subnormal = np.abs(samples) < FLOAT32_TINY
    if not subnormal.any():
        return samples
    if not samples.flags.writeable:
        samples = samples.copy()
    samples[subnormal] = 0.0
    return samples
