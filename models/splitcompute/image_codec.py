"""A learned input codec: the factorized-prior image autoencoder, the baseline the Entropic Student
paper compares against as "input compression" with learned codecs.

Balle, Laparra, Simoncelli, "End-to-end optimized image compression" (ICLR 2017), with the
factorized prior of Balle et al. (ICLR 2018, appendix 6.1) that the student uses too
(`entropy.FactorizedPrior`, coded by the same range coder): analysis transform g_a (four 5x5
stride-2 convolutions with GDN, 96 px -> 6x6 latent), synthesis g_s (transposed, with inverse
GDN), trained for rate + lambda * 255^2 * MSE (CompressAI's convention, MSE on [0, 1] images).
Its decoded image is what the teacher classifies; it is trained for image fidelity only, never
for the task (the point of the comparison).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.splitcompute.data import ShapeData, iterate_batches, to_float
from models.splitcompute.entropy import FactorizedPrior, bits
from models.splitcompute.gdn import GDN
from models.splitcompute.train import TrainConfig, _optimizer, _steps


@dataclass(frozen=True)
class ImageCodecConfig:
    lmbda: float = 0.016  # distortion weight: loss = bits per pixel + lmbda * 255^2 * MSE
    channels: int = 32  # width N of both transforms (narrow: ~40 s per epoch on one CPU thread)
    latent_channels: int = 32  # M of the latent (B, M, H/16, W/16)
    epochs: int = 5  # passes over the training images (~40 s each on an idle core)
    lr: float = 1e-3  # peak Adam learning rate (one-cycle); the prior learns 10x faster (2e-3 diverged)
    clip_norm: float = 1.0  # gradient-norm clip: inverse GDN grows with x^3 and blew up unclipped
    batch_size: int = 32
    seed: int = 0


def _down(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 5, 2, 2)


def _up(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(c_in, c_out, 5, 2, 2, output_padding=1)


class FactorizedPriorAutoencoder(nn.Module):
    def __init__(self, cfg: ImageCodecConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or ImageCodecConfig()
        n, m = cfg.channels, cfg.latent_channels
        self.analysis = nn.Sequential(  # (B, 3, H, W) -> (B, M, H/16, W/16)
            _down(3, n), GDN(n), _down(n, n), GDN(n), _down(n, n), GDN(n), _down(n, m))
        self.prior = FactorizedPrior(m)
        self.synthesis = nn.Sequential(  # (B, M, H/16, W/16) -> (B, 3, H, W)
            _up(m, n), GDN(n, inverse=True), _up(n, n), GDN(n, inverse=True), _up(n, n), GDN(n, inverse=True),
            _up(n, 3))

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (reconstruction in [0, 1]-ish, latent likelihoods); noisy latent in training, rounded in eval."""
        latent, likelihood = self.prior(self.analysis(image))
        return self.synthesis(latent), likelihood

    @torch.no_grad()
    def decode_image(self, symbols: torch.Tensor) -> np.ndarray:
        """Integer latent symbols (B, M, h, w) -> uint8 images (B, 3, H, W), what the teacher sees."""
        image = self.synthesis(symbols).clamp(0, 1)
        return (image * 255 + 0.5).to(torch.uint8).numpy()


def train_image_codec(data: ShapeData, cfg: ImageCodecConfig) -> tuple[FactorizedPriorAutoencoder, dict]:
    """Rate-distortion training on the training split; keeps the epoch with the best validation loss."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = FactorizedPriorAutoencoder(cfg)
    images = data.split("train")[0]
    train_cfg = TrainConfig(lr=cfg.lr, batch_size=cfg.batch_size)
    groups = [{"params": [*model.analysis.parameters(), *model.synthesis.parameters()], "lr": cfg.lr},
              {"params": list(model.prior.parameters()), "lr": cfg.lr * 10}]
    optimizer, schedule = _optimizer(groups, train_cfg, _steps(len(images), train_cfg, cfg.epochs))
    best: dict[str, Any] = {"valid_loss": float("inf")}
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for x, _ in iterate_batches(images, np.zeros(len(images)), cfg.batch_size, rng):
            loss = _rd_loss(model, torch.from_numpy(to_float(x)), cfg.lmbda)[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            optimizer.step()
            schedule.step()
        metrics = evaluate_image_codec(model, data.split("valid")[0], cfg.lmbda)
        if metrics["valid_loss"] < best["valid_loss"]:
            best, state = {**metrics, "best_epoch": epoch}, copy.deepcopy(model.state_dict())
    model.load_state_dict(state)
    return model.eval(), best


def _rd_loss(model: FactorizedPriorAutoencoder, image: torch.Tensor, lmbda: float) -> tuple[torch.Tensor, ...]:
    """-> (loss, bits per pixel, MSE) of one batch."""
    reconstruction, likelihood = model(image)
    bpp = bits(likelihood) / (image.shape[0] * image.shape[2] * image.shape[3])
    mse = F.mse_loss(reconstruction, image)
    return bpp + lmbda * 255**2 * mse, bpp, mse


@torch.no_grad()
def evaluate_image_codec(model: FactorizedPriorAutoencoder, images: np.ndarray, lmbda: float) -> dict[str, float]:
    """Validation loss, rate estimate (bytes per image) and PSNR of the rounded latent."""
    model.eval()
    loss = bpp = mse = 0.0
    for start in range(0, len(images), 200):
        batch = torch.from_numpy(to_float(images[start:start + 200]))
        values = _rd_loss(model, batch, lmbda)
        loss, bpp, mse = (t + float(v) * len(batch) for t, v in zip((loss, bpp, mse), values, strict=True))
    n, pixels = len(images), images.shape[2] * images.shape[3]
    return {"valid_loss": loss / n, "valid_estimated_bytes_per_image": bpp / n * pixels / 8,
            "valid_psnr_db": float(10 * np.log10(1.0 / (mse / n)))}


def load_image_codec(path: Any) -> FactorizedPriorAutoencoder:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = FactorizedPriorAutoencoder(ImageCodecConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()
