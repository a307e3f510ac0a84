"""Entropy coding of the bottleneck latent with CDF tables from the learned prior.

The tables are the factorized prior's probability mass of every integer in [-R, R], one row per
latent channel (models/splitcompute/entropy.py `pmf_table`), exported into the model
repository's meta.json next to both graphs. Symbols are coded in (C, h, w) order with
constriction's range coder (a queue: decoded in the order encoded); the coder quantizes the
float64 tables deterministically on both sides, so encoder and decoder see the same CDFs.
numpy + constriction only: this module runs on the edge device and in the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import constriction
import numpy as np

_MODEL_FAMILY = constriction.stream.model.Categorical(perfect=False)


class CodecError(ValueError):
    """A body that does not decode to exactly the declared symbols."""


@dataclass(frozen=True)
class Codec:
    version: int  # u32 codec version: a hash of the encoder weights and these tables
    latent_shape: tuple[int, int, int]  # (C, h, w) of one image's latent
    pmf: np.ndarray  # (C, 2R + 1) float64 probability of symbols -R..R per channel
    _probabilities: np.ndarray = field(init=False, repr=False, compare=False)  # (C*h*w, 2R + 1)

    def __post_init__(self) -> None:
        c, h, w = self.latent_shape
        if self.pmf.shape[0] != c or self.pmf.shape[1] % 2 != 1:
            raise ValueError(f"pmf table {self.pmf.shape} does not fit latent shape {self.latent_shape}")
        object.__setattr__(self, "_probabilities", np.repeat(self.pmf, h * w, axis=0))

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Codec:
        """From the "codec" entry a splitcompute graph's meta.json carries."""
        codec = meta["codec"]
        return cls(int(codec["version"]), tuple(codec["latent_shape"]), np.asarray(codec["pmf"], np.float64))

    def to_meta(self) -> dict[str, Any]:
        return {"version": self.version, "latent_shape": list(self.latent_shape), "radius": self.radius,
                "pmf": self.pmf.tolist()}

    @property
    def radius(self) -> int:
        return (self.pmf.shape[1] - 1) // 2

    def quantize(self, latent: np.ndarray) -> np.ndarray:
        """Float latent (C, h, w) -> int32 symbols in [-R, R] (round half to even, like torch)."""
        return np.clip(np.rint(latent), -self.radius, self.radius).astype(np.int32)

    def encode(self, symbols: np.ndarray) -> bytes:
        """int symbols (C, h, w) -> the body bytes."""
        if symbols.shape != self.latent_shape:
            raise ValueError(f"symbols have shape {symbols.shape}, the codec codes {self.latent_shape}")
        encoder = constriction.stream.queue.RangeEncoder()
        encoder.encode((symbols.reshape(-1) + self.radius).astype(np.int32), _MODEL_FAMILY, self._probabilities)
        words = encoder.get_compressed().astype("<u4").tobytes()
        # The final word's high bytes are often zero; the decoder pads them back (at most 3 bytes).
        trimmed = len(words) - len(words.rstrip(b"\0"))
        return words[:len(words) - min(trimmed, 3)]

    def decode(self, body: bytes) -> np.ndarray:
        """Body bytes -> float32 symbols (C, h, w); the allocation is fixed by the codec's shape."""
        padded = body + b"\0" * (-len(body) % 4)
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(padded, dtype="<u4").astype(np.uint32))
        try:
            indices = decoder.decode(_MODEL_FAMILY, self._probabilities)
        except (AssertionError, ValueError, RuntimeError) as err:
            # constriction raises AssertionError for a body no encoder could have produced (found by fuzzing).
            raise CodecError(f"body of {len(body)} bytes is not a valid range-coded stream ({err})") from None
        if not decoder.maybe_exhausted():
            raise CodecError(f"body of {len(body)} bytes holds more data than the {indices.size} symbols it declares")
        return (indices.astype(np.int32) - self.radius).astype(np.float32).reshape(self.latent_shape)

    def estimated_bits(self, symbols: np.ndarray) -> float:
        """The prior's information content -log2 p of the symbols: the rate the model predicts."""
        c = np.arange(self.latent_shape[0])[:, None, None]
        return float(-np.log2(self.pmf[c, symbols.astype(np.int64) + self.radius]).sum())
