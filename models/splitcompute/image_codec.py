"""A learned input codec: the factorized-prior image autoencoder, the baseline the Entropic Student
paper compares against as "input compression" with learned codecs.

Balle, Laparra, Simoncelli, "End-to-end optimized image compression" (ICLR 2017), with the
factorized prior of Balle et al. (ICLR 2018, appendix 6.1) that the student uses too
(`entropy.FactorizedPrior`, coded by the same range coder): analysis transform g_a (5x5 stride-2
convolutions with GDN), synthesis g_s (transposed, with inverse GDN), trained for
rate + lambda * 255^2 * MSE (CompressAI's convention, MSE on [0, 1] images). The paper's four
downsamplings (96 px -> 6x6 latent, 32 channels) stayed at ~17.9 dB and left the teacher at chance
after 5 CPU epochs (the class gratings, periods 5 and 10 px, were blurred away); two (24x24
latent) reach half the teacher's accuracy within two epochs and 80% at ~950 bytes after 12 (lambda 0.004).
Its decoded image is what the teacher classifies; it is trained for image fidelity only, never
for the task (the point of the comparison).
"""

from __future__ import annotations

import copy
import hashlib
import json
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
    channels: int = 32  # width N of both transforms
    latent_channels: int = 32  # M of the latent (B, M, H/2^d, W/2^d)
    downsamplings: int = 2  # d stride-2 convolutions in g_a (transposed in g_s): 2 -> 24x24 latent at 96 px
    epochs: int = 12  # passes over the training images (~1-2.5 min each on one thread of the loaded 2 cores)
    lr: float = 1e-3  # peak Adam learning rate (one-cycle); the prior learns 10x faster (2e-3 diverged)
    clip_norm: float = 1.0  # gradient-norm clip: inverse GDN grows with x^3 and blew up unclipped
    batch_size: int = 32
    seed: int = 0


LEGACY_DOWNSAMPLINGS = 4  # checkpoints saved before `downsamplings` existed had four


def checkpoint_name(cfg: ImageCodecConfig) -> str:
    """File name of the checkpoint trained with `cfg`: every field is in it (a digest of the whole
    config), so a cached checkpoint of another configuration is never taken for this one."""
    fields = asdict(cfg)
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
    return (f"image_codec_d{cfg.downsamplings}_n{cfg.channels}_m{cfg.latent_channels}_e{cfg.epochs}"
            f"_lambda{cfg.lmbda:g}_{digest}.pt")


def _down(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 5, 2, 2)


def _up(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(c_in, c_out, 5, 2, 2, output_padding=1)


class FactorizedPriorAutoencoder(nn.Module):
    def __init__(self, cfg: ImageCodecConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or ImageCodecConfig()
        n, m, d = cfg.channels, cfg.latent_channels, cfg.downsamplings
        if d < 1:
            raise ValueError(f"downsamplings must be >= 1, got {d}")
        widths = [3] + [n] * (d - 1) + [m]  # g_a: 3 -> N -> ... -> N -> M, GDN between convolutions
        analysis: list[nn.Module] = []
        synthesis: list[nn.Module] = []
        for i in range(d):
            analysis += [_down(widths[i], widths[i + 1])] + ([GDN(widths[i + 1])] if i < d - 1 else [])
            synthesis += [_up(widths[d - i], widths[d - i - 1])] + ([GDN(widths[d - i - 1], inverse=True)]
                                                                   if i < d - 1 else [])
        self.analysis = nn.Sequential(*analysis)  # (B, 3, H, W) -> (B, M, H/2^d, W/2^d)
        self.prior = FactorizedPrior(m)
        self.synthesis = nn.Sequential(*synthesis)  # (B, M, H/2^d, W/2^d) -> (B, 3, H, W)

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
        print(f"image codec lambda={cfg.lmbda:g} epoch {epoch}: {metrics}", flush=True)
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
    model = FactorizedPriorAutoencoder(ImageCodecConfig(**codec_config(checkpoint["config"])))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def codec_config(stored: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's stored config with the fields it predates filled with their values of the time."""
    return {"downsamplings": LEGACY_DOWNSAMPLINGS, **stored}
