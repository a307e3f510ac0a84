"""PaSST, scaled down: a patchout audio spectrogram transformer.

Koutini, Schlüter, Eghbal-zadeh, Widmer, "Efficient Training of Audio Transformers with
Patchout" (Interspeech 2022) and "Learning General Audio Representations with Large-Scale
Training of Patchout Audio Transformers" (HEAR 2021):

- the log-mel spectrogram (`frontend.LogMel`, 128 mel, 25 ms / 10 ms at 32 kHz) is cut into
  16x16 patches with overlap (stride 10, as in PaSST), each linearly projected (a strided conv);
- positional encoding is disentangled into a frequency part and a time part, added to every
  patch (section 3.2), plus a class token with its own encoding;
- Patchout (section 3.1), in training only: structured patchout drops whole frequency rows and
  time columns of the patch grid, unstructured patchout drops random single patches; the
  sequence gets shorter, so training is faster and regularised. Inference sees every patch;
- pre-norm transformer blocks (ViT), the class token's output feeds the classifier.

The embedding a caller gets is [class token, mean of patch tokens] after the final norm
(HEAR's PaSST also concatenates a token and more, here at a small width); `pooling="stats"` adds the
patch tokens' standard deviation (the statistics pooling of Snyder et al., "X-vectors: Robust DNN
Embeddings for Speaker Recognition", ICASSP 2018: mean and std over frames), an option the corpus
pretraining studies for voice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from models.audio.frontend import FrontEndConfig, LogMel, WaveformEmbedder


@dataclass(frozen=True)
class PasstConfig:
    n_classes: int = 10  # classes of the synthetic sound set (training head only)
    dim: int = 64  # token width
    depth: int = 3  # transformer blocks
    heads: int = 4  # attention heads
    mlp_ratio: float = 2.0  # hidden width of the block MLP / dim
    patch: int = 16  # patch height and width (mel bins x frames)
    stride: int = 10  # patch stride: 6 bins/frames of overlap, as in PaSST
    dropout: float = 0.0  # dropout inside blocks
    drop_freq_rows: int = 2  # structured patchout: frequency rows dropped per training batch
    drop_time_cols: int = 2  # structured patchout: time columns dropped per training batch
    drop_patches: float = 0.1  # unstructured patchout: share of the remaining patches dropped
    pooling: str = "mean"  # scene embedding: "mean" [class, mean patch]; "stats" adds the patch std (x-vector)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, H, N, c/H)
        q, k, v = qkv[0], qkv[1], qkv[2]
        weights = torch.softmax(q @ k.transpose(-2, -1) * (c // self.heads) ** -0.5, dim=-1)  # (B, H, N, N)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class Passt(WaveformEmbedder):
    """waveform (B, window_samples) -> embedding (B, 2 * dim, or 3 * dim pooling stats); `classify` gives logits."""


    def __init__(self, config: PasstConfig | None = None, front: FrontEndConfig | None = None):
        super().__init__()
        config, front = config or PasstConfig(), front or FrontEndConfig()
        self.config, self.front_config = config, front
        self.front_end = LogMel(front)
        self.grid = (
            (front.n_mels - config.patch) // config.stride + 1,
            (front.frames - config.patch) // config.stride + 1,
        )  # (F', T') patch rows, columns
        self.patch_embed = nn.Conv2d(1, config.dim, config.patch, config.stride)
        self.freq_pos = nn.Parameter(torch.randn(1, config.dim, self.grid[0], 1) * 0.02)
        self.time_pos = nn.Parameter(torch.randn(1, config.dim, 1, self.grid[1]) * 0.02)
        self.cls_token = nn.Parameter(torch.randn(1, 1, config.dim) * 0.02)
        self.blocks = nn.ModuleList(
            Block(config.dim, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.n_classes)

    @property
    def embedding_size(self) -> int:
        return (3 if self.config.pooling == "stats" else 2) * self.config.dim

    def patchout(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, C, F', T') -> (B, P, C): structured then unstructured patchout (training only)."""
        c = self.config
        if self.training and c.drop_freq_rows:
            keep = torch.randperm(self.grid[0])[c.drop_freq_rows :].sort().values
            patches = patches[:, :, keep]
        if self.training and c.drop_time_cols:
            keep = torch.randperm(self.grid[1])[c.drop_time_cols :].sort().values
            patches = patches[:, :, :, keep]
        tokens = patches.flatten(2).transpose(1, 2)  # (B, P, C)
        if self.training and c.drop_patches > 0:
            count = tokens.shape[1]
            keep = torch.randperm(count)[: max(1, round(count * (1 - c.drop_patches)))].sort().values
            tokens = tokens[:, keep]
        return tokens

    def forward_features(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 1, M, T) log-mel -> (B, 1 + P, C) normalised tokens, class token first."""
        patches = self.patch_embed(mel)  # (B, C, F', T')
        patches = patches + self.freq_pos + self.time_pos
        tokens = self.patchout(patches)  # (B, P, C)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def classify(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, 1, M, T) -> (B, n_classes) logits from the class token (the training objective)."""
        return self.head(self.forward_features(mel)[:, 0])

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        tokens = self.forward_features(mel)
        patches = tokens[:, 1:]  # (B, P, C)
        pooled = [tokens[:, 0], patches.mean(dim=1)]
        if self.config.pooling == "stats":  # statistics pooling (Snyder et al., x-vectors, ICASSP 2018)
            pooled.append((patches.var(dim=1, unbiased=False) + 1e-6).sqrt())  # eps: a finite gradient at var 0
        return torch.cat(pooled, dim=-1)  # (B, 2C) or (B, 3C)

    def to_config(self) -> dict[str, Any]:
        return {"passt": asdict(self.config), "front_end": asdict(self.front_config)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Passt:
        return cls(PasstConfig(**config["passt"]), FrontEndConfig(**config["front_end"]))


def cross_entropy(model: Passt, mel: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model.classify(mel), labels)
