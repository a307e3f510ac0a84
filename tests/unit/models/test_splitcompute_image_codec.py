"""The learned image codec (factorized-prior autoencoder): transform depth, rate accounting, cache names."""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.splitcompute.data import ShapeDataConfig, make_shape_data, to_float
from models.splitcompute.entropy import bits
from models.splitcompute.gdn import GDN
from models.splitcompute.image_codec import (
    FactorizedPriorAutoencoder,
    ImageCodecConfig,
    _rd_loss,
    checkpoint_name,
    evaluate_image_codec,
    load_image_codec,
)
from models.splitcompute.train import single_thread

IMAGES = make_shape_data(ShapeDataConfig(n_train=4, n_valid=4, n_test=4, seed=2)).images  # (12, 3, 96, 96)


@pytest.fixture(autouse=True)
def one_torch_thread():
    with single_thread():
        yield


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_each_downsampling_halves_the_latent_and_synthesis_restores_96_px(depth: int) -> None:
    model = FactorizedPriorAutoencoder(ImageCodecConfig(channels=4, latent_channels=6, downsamplings=depth)).eval()
    latent = model.analysis(torch.from_numpy(to_float(IMAGES[:2])))
    assert latent.shape == (2, 6, 96 >> depth, 96 >> depth)
    assert model.decode_image(torch.round(latent)).shape == (2, 3, 96, 96)
    gdns = [m for m in model.modules() if isinstance(m, GDN)]
    assert len(gdns) == 2 * (depth - 1) and sum(g.inverse for g in gdns) == depth - 1


def test_the_rate_is_bits_of_the_latent_per_image_pixel_not_per_value() -> None:
    torch.manual_seed(0)
    model = FactorizedPriorAutoencoder(ImageCodecConfig(channels=4, latent_channels=6, downsamplings=2)).eval()
    x = torch.from_numpy(to_float(IMAGES[:3]))
    with torch.no_grad():
        _, likelihood = model(x)
    assert likelihood.shape == (3, 6, 24, 24)  # 6 * 24 * 24 latent values per 96 * 96 image pixels
    with torch.no_grad():
        _, bpp, _ = _rd_loss(model, x, 0.01)
    assert float(bpp) == pytest.approx(float(bits(likelihood)) / (3 * 96 * 96), rel=1e-5)
    metrics = evaluate_image_codec(model, IMAGES[:3], 0.01)
    assert metrics["valid_estimated_bytes_per_image"] == pytest.approx(float(bits(likelihood)) / 3 / 8, rel=1e-4)


def test_rate_distortion_training_reconstructs_a_few_crops_well_beyond_their_mean_colour() -> None:
    """The overfit check: no bug between loss, noise and rounding keeps the decoded image at the mean."""
    torch.manual_seed(0)
    model = FactorizedPriorAutoencoder(ImageCodecConfig(channels=16, latent_channels=16, downsamplings=1))
    x = torch.from_numpy(to_float(IMAGES[:4, :, 32:64, 32:64]))  # 32 px crops keep it to seconds
    mean_mse = float(((x - x.mean(dim=(2, 3), keepdim=True)) ** 2).mean())
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(240):
        loss = _rd_loss(model, x, 0.1)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        mse = float(_rd_loss(model.eval(), x, 0.1)[2])  # rounded latent, as coded
    assert mse < 0.6 * mean_mse, (mse, mean_mse)  # measured 0.53 (19.2 vs 16.5 dB)


def test_the_checkpoint_name_changes_with_every_config_field() -> None:
    base = ImageCodecConfig()
    names = {checkpoint_name(base)}
    for f in fields(ImageCodecConfig):
        value = getattr(base, f.name)
        names.add(checkpoint_name(replace(base, **{f.name: value * 2 if value else 1})))
    assert len(names) == len(fields(ImageCodecConfig)) + 1
    assert checkpoint_name(base) != f"image_codec_lambda{base.lmbda:g}.pt"  # the name of the 4-deep caches


def test_a_checkpoint_saved_before_the_depth_field_loads_four_deep(tmp_path: Path) -> None:
    legacy = FactorizedPriorAutoencoder(ImageCodecConfig(channels=4, latent_channels=6, downsamplings=4))
    stored = {k: v for k, v in asdict(legacy.config).items() if k != "downsamplings"}
    torch.save({"state_dict": legacy.state_dict(), "config": stored}, tmp_path / "old.pt")
    model = load_image_codec(tmp_path / "old.pt")
    assert model.config.downsamplings == 4
    x = torch.from_numpy(to_float(IMAGES[:1]))
    np.testing.assert_array_equal(model.analysis(x).detach().numpy(), legacy.analysis(x).detach().numpy())
