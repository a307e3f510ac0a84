"""PaSST patchout and the bag-of-words histograms."""

import numpy as np
import torch

from models.audio.bow import BagOfWords, BowConfig
from models.audio.passt import Passt, PasstConfig


def _mel(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 1, 128, 98, generator=torch.Generator().manual_seed(0))


def test_patch_grid_follows_paper_sizes() -> None:
    model = Passt(PasstConfig(dim=16, depth=1, heads=2))
    model.eval()
    assert model.grid == (12, 9)  # 16x16 patches, stride 10 over 128 mel x 98 frames
    assert model.forward_features(_mel()).shape == (2, 1 + 12 * 9, 16)


def test_patchout_shortens_the_sequence_in_training_only() -> None:
    config = PasstConfig(dim=16, depth=1, heads=2, drop_freq_rows=3, drop_time_cols=2, drop_patches=0.2)
    model = Passt(config).train()
    kept = round((12 - 3) * (9 - 2) * 0.8)
    assert model.forward_features(_mel()).shape == (2, 1 + kept, 16)
    model.eval()
    assert model.forward_features(_mel()).shape == (2, 1 + 12 * 9, 16)
    first, second = model(torch.ones(1, 32000) * 0.1), model(torch.ones(1, 32000) * 0.1)
    torch.testing.assert_close(first, second)  # no randomness left in eval


def test_bow_histograms_are_normalised_word_counts_per_band_and_codebook() -> None:
    config = BowConfig(hidden=16, latent=4, codebooks=(3, 5), bands=4)
    model = BagOfWords(config).eval()
    for centroids in model.codebooks():
        centroids.copy_(torch.randn(centroids.shape, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        embedding = model.histograms(model.codes(_mel(3)))  # (3, 4 * 8)
    assert embedding.shape == (3, 4 * (3 + 5))
    per = embedding.reshape(3, 4, 8)
    np.testing.assert_allclose(per[..., :3].sum(-1).numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(per[..., 3:].sum(-1).numpy(), 1.0, atol=1e-6)
    patches_per_band = model.grid[0] // 4 * model.grid[1]
    counts = (per * patches_per_band).numpy()
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-4)  # whole words, hard assignment


def test_bow_embedding_is_sqrt_frequency_times_idf_learned_on_training_windows() -> None:
    model = BagOfWords(BowConfig(hidden=16, latent=4, codebooks=(3, 5), bands=4)).eval()
    for centroids in model.codebooks():
        centroids.copy_(torch.randn(centroids.shape, generator=torch.Generator().manual_seed(1)))
    model.fit_idf(_mel(6))
    with torch.no_grad():
        histograms = model.histograms(model.codes(_mel(2)))
        torch.testing.assert_close(model.embed(_mel(2)), histograms.sqrt() * model.idf)
    assert float(model.idf.min()) >= 1.0  # smoothed idf: a word in every window keeps weight 1
