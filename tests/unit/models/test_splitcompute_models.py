"""The split-computing family's data, factorized prior and graphs (fast, no sockets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from infersuite.services.splitcompute.codec import Codec
from models.splitcompute.data import CLASS_NAMES, ShapeDataConfig, make_shape_data
from models.splitcompute.entropy import FactorizedPrior, bits
from models.splitcompute.student import EdgeEncoder, EntropicStudent, ServerHead
from models.splitcompute.train import choose_default, quantize, single_thread

SMALL = ShapeDataConfig(n_train=40, n_valid=10, n_test=10, seed=3)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small ops on 2 OpenMP threads crawl on the shared test machine (see train.single_thread)."""
    with single_thread():
        yield


def test_the_data_is_deterministic_96px_rgb_with_every_class() -> None:
    a, b = make_shape_data(SMALL), make_shape_data(SMALL)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (60, 3, 96, 96) and a.images.dtype == np.uint8
    assert set(a.labels.tolist()) <= set(range(len(CLASS_NAMES))) and len(set(a.labels.tolist())) >= 8
    assert len(np.intersect1d(a.train, a.test)) == 0
    other = make_shape_data(ShapeDataConfig(n_train=40, n_valid=10, n_test=10, seed=4))
    assert not np.array_equal(a.images, other.images)


def test_the_prior_learns_a_laplace_source_down_to_its_entropy() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    samples = torch.from_numpy(rng.laplace(0.0, 2.0, (128, 2, 4, 4))).float()  # (B, C, h, w)
    prior = FactorizedPrior(2)
    optimizer = torch.optim.Adam(prior.parameters(), lr=0.05)
    for _ in range(120):
        _, likelihood = prior(samples)
        loss = bits(likelihood) / samples.numel()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior.eval()
    symbols = torch.round(samples)
    _, counts = np.unique(symbols.numpy(), return_counts=True)
    entropy = float(-(counts / counts.sum() * np.log2(counts / counts.sum())).sum())
    with torch.no_grad():
        model_bits = float(bits(prior.likelihood(symbols))) / samples.numel()
    assert entropy <= model_bits + 0.02 and model_bits <= entropy * 1.05 + 0.05, (model_bits, entropy)
    pmf, radius = prior.pmf_table()
    assert 8 <= radius < 64 and np.all(1 - pmf.sum(axis=1) < 1e-7)  # Laplace(2) tails fall below 1e-7 by ~32


def test_training_noise_is_uniform_within_half_a_step_and_eval_rounds() -> None:
    prior, latent = FactorizedPrior(3), torch.randn(4, 3, 5, 5) * 3
    noisy, likelihood = prior.train()(latent)
    assert float((noisy - latent).abs().max()) <= 0.5 and not torch.equal(noisy, torch.round(noisy))
    rounded, _ = prior.eval()(latent)
    assert torch.equal(rounded, torch.round(latent)) and bool((likelihood > 0).all() & (likelihood <= 1).all())


def test_the_cdf_tables_give_the_codec_the_torch_prior_s_rate() -> None:
    torch.manual_seed(1)
    student = EntropicStudent().eval()
    pmf, radius = student.prior.pmf_table()
    assert pmf.shape == (16, 2 * radius + 1) and np.all(pmf.sum(axis=1) <= 1 + 1e-9)
    codec = Codec(1, student.config.latent_shape, pmf)
    with torch.no_grad():
        symbols = quantize(student.encoder(torch.rand(1, 3, 96, 96)), radius)
        torch_bits = float(bits(student.prior.likelihood(symbols)))
    np.testing.assert_allclose(codec.estimated_bits(symbols[0].numpy()), torch_bits, rtol=1e-4)


def test_edge_and_server_graphs_split_the_student_with_batch_on_dim_0() -> None:
    student = EntropicStudent().eval()
    (image,) = EdgeEncoder(student).example_inputs(3)
    latent = EdgeEncoder(student)(image)
    assert latent.shape == (3, *student.config.latent_shape) == (3, 16, 12, 12)
    probabilities = ServerHead(student)(torch.round(latent))
    assert probabilities.shape == (3, 10)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(3))
    with torch.no_grad():
        logits, _ = student(image)
    torch.testing.assert_close(torch.softmax(logits, dim=1), probabilities)


def test_the_default_student_is_the_cheapest_within_a_point_of_the_teacher() -> None:
    results = [
        {"checkpoint": "a", "valid_accuracy": 0.90, "valid_estimated_bytes_per_image": 300},
        {"checkpoint": "b", "valid_accuracy": 0.885, "valid_estimated_bytes_per_image": 120},
        {"checkpoint": "c", "valid_accuracy": 0.80, "valid_estimated_bytes_per_image": 40},
    ]
    assert choose_default(results, teacher_accuracy=0.89)["checkpoint"] == "b"
    assert choose_default(results, teacher_accuracy=0.99)["checkpoint"] == "a"
    tied = [*results, {"checkpoint": "d", "valid_accuracy": 0.90, "valid_estimated_bytes_per_image": 150}]
    assert choose_default(tied, teacher_accuracy=0.99)["checkpoint"] == "d"  # as accurate as a, fewer bytes
