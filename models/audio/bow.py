"""A bag-of-words audio embedder after Verma, "Attention is All You Need? Good Embeddings with
Statistics are enough" (2021): no attention, no convolution.

1. Patches of the log-mel spectrogram (the shared `frontend.LogMel`) are flattened.
2. A small feed-forward autoencoder learns a latent code per patch (trained on reconstruction).
3. k-means codebooks (several sizes) quantise the latent codes; each patch becomes a word.
4. The embedding of a window is the normalised histogram of its words ("bag of words"), one
   histogram per codebook, as sqrt(frequency) x idf: the square root (Hellinger) and the inverse
   document frequency of each word over the training windows (classic bag-of-words weighting)
   keep words that occur everywhere from dominating a cosine (retrieval mAP in reports/audio.md).
   Deviation, on purpose: histograms are kept per frequency band (the
   patch rows grouped into `bands`), because a pure bag of words cannot tell a low-band noise
   from a high-band one (the same patch shape at another height); the paper's statistics carry
   no position either, and our synthetic classes need it.
5. An MLP head on the histogram is the classifier (the "probe" of the paper).

Hard assignment is exported as (distance == row minimum) -> one-hot, so the graph stays plain.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from models.audio.frontend import FrontEndConfig, LogMel, WaveformEmbedder


@dataclass(frozen=True)
class BowConfig:
    patch: tuple[int, int] = (16, 16)  # patch (mel bins, frames)
    stride: tuple[int, int] = (16, 8)  # patch stride: rows do not overlap, columns overlap by half
    hidden: int = 128  # autoencoder hidden width
    latent: int = 24  # autoencoder code size
    codebooks: tuple[int, ...] = (16, 64)  # k of each k-means codebook
    bands: int = 4  # frequency bands with their own histograms (patch rows grouped)
    n_classes: int = 10  # classes of the MLP probe head
    head_hidden: int = 128  # MLP head width


class PatchAutoencoder(nn.Module):
    def __init__(self, patch_size: int, hidden: int, latent: int):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(patch_size, hidden), nn.ReLU(), nn.Linear(hidden, latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, patch_size))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(patches))


class BagOfWords(WaveformEmbedder):
    """waveform (B, window_samples) -> embedding (B, bands * sum(codebooks)) code histograms."""

    idf: torch.Tensor  # (D,) buffer, typed for mypy

    def __init__(self, config: BowConfig | None = None, front: FrontEndConfig | None = None):
        super().__init__()
        config, front = config or BowConfig(), front or FrontEndConfig()
        self.config, self.front_config = config, front
        self.front_end = LogMel(front)
        (ph, pw), (sh, sw) = config.patch, config.stride
        self.grid = ((front.n_mels - ph) // sh + 1, (front.frames - pw) // sw + 1)  # (rows, columns)
        if self.grid[0] % config.bands:
            raise ValueError(f"{self.grid[0]} patch rows do not split into {config.bands} bands")
        self.autoencoder = PatchAutoencoder(ph * pw, config.hidden, config.latent)
        for i, k in enumerate(config.codebooks):
            self.register_buffer(f"codebook{i}", torch.zeros(k, config.latent))
        size = config.bands * sum(config.codebooks)
        self.register_buffer("idf", torch.ones(size))  # set from the training windows (`fit_idf`)
        self.head = nn.Sequential(
            nn.Linear(size, config.head_hidden), nn.ReLU(), nn.Linear(config.head_hidden, config.n_classes)
        )

    @property
    def embedding_size(self) -> int:
        return self.config.bands * sum(self.config.codebooks)

    def codebooks(self) -> list[torch.Tensor]:
        return [getattr(self, f"codebook{i}") for i in range(len(self.config.codebooks))]

    def patches(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 1, M, T) -> (B, rows, columns, ph * pw) flattened patches."""
        (ph, pw), (sh, sw) = self.config.patch, self.config.stride
        grid = mel[:, 0].unfold(1, ph, sh).unfold(2, pw, sw)  # (B, rows, cols, ph, pw)
        return grid.flatten(3)

    def codes(self, mel: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.encoder(self.patches(mel))  # (B, rows, cols, latent)

    def histograms(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, rows, cols, latent) -> (B, bands * sum(k)) normalised word counts."""
        b = codes.shape[0]
        per_band = codes.reshape(b, self.config.bands, -1, codes.shape[-1])  # (B, bands, P, L)
        counts = []
        for centroids in self.codebooks():
            distance = (per_band.unsqueeze(-2) - centroids).pow(2).sum(-1)  # (B, bands, P, K)
            words = (distance <= distance.amin(-1, keepdim=True)).float()  # hard assignment
            counts.append(words.sum(2) / words.sum((2, 3)).unsqueeze(-1))  # (B, bands, K), sums to 1
        return torch.cat(counts, dim=-1).flatten(1)

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        return self.histograms(self.codes(mel)).sqrt() * self.idf  # (B, D)

    @torch.no_grad()
    def fit_idf(self, mel: torch.Tensor, batch: int = 512) -> None:
        """idf = ln((1 + N) / (1 + windows holding the word)) + 1 over training windows (B, 1, M, T), counted
        `batch` windows at a time (the word assignment holds a distance per patch and centroid)."""
        present = torch.zeros_like(self.idf)  # (D,)
        for i in range(0, len(mel), batch):
            present += (self.histograms(self.codes(mel[i:i + batch])) > 0).float().sum(0)
        self.idf.copy_(torch.log((1.0 + mel.shape[0]) / (1.0 + present)) + 1.0)

    def to_config(self) -> dict[str, Any]:
        return {"bow": asdict(self.config), "front_end": asdict(self.front_config)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BagOfWords:
        bow: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in config["bow"].items()}
        return cls(BowConfig(**bow), FrontEndConfig(**config["front_end"]))
