"""A tiny training run learns; checkpoints and the CLI report round-trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.ctr.train import TrainConfig, load_checkpoint, main, predict, save_checkpoint, train_variant

TINY_TRAIN = TrainConfig(epochs=3, batch_size=32, lr=5e-3)


@pytest.fixture(scope="module")
def trained_din(tiny_click_data):
    return train_variant("din_prelu", tiny_click_data, TINY_TRAIN, progress=False)


def test_tiny_din_learns_clearly_above_chance(trained_din):
    model, metrics = trained_din
    assert metrics["valid_auc"] > 0.65
    assert metrics["test_auc"] > 0.6
    assert not model.training
    assert len(metrics["valid_gauc_curve"]) == TINY_TRAIN.epochs
    assert metrics["valid_gauc"] == max(metrics["valid_gauc_curve"])  # best epoch is kept


def test_checkpoint_round_trip_gives_identical_scores(trained_din, tiny_click_data, tmp_path):
    model, metrics = trained_din
    path = tmp_path / "din.pt"
    save_checkpoint(path, model, metrics, tiny_click_data)
    checkpoint = torch.load(path, weights_only=True)
    assert set(checkpoint) == {"state_dict", "config", "metrics", "data_config"}
    users = tiny_click_data.test_users[:20]
    rows, scores = predict(model, tiny_click_data, users)
    rows_again, scores_again = predict(load_checkpoint(path), tiny_click_data, users)
    np.testing.assert_array_equal(rows, rows_again)
    np.testing.assert_allclose(scores, scores_again, rtol=1e-6)


def test_cli_quick_run_writes_checkpoints_report_and_json(tmp_path):
    report = tmp_path / "ctr_quality.md"
    argv = ["--out", str(tmp_path), "--report", str(report), "--quick", "--users", "300",
            "--no-progress"]  # fmt: skip
    quality = main(argv)
    for variant in ("base", "din_prelu", "din_dice"):
        assert (tmp_path / f"{variant}.pt").exists()
    saved = json.loads((tmp_path / "quality.json").read_text())
    assert saved["variants"]["base"]["rela_impr_gauc"] == 0.0
    assert set(saved["variants"]) == {"base", "din_prelu", "din_dice"}
    text = report.read_text()
    assert "oracle" in text and "--quick" in text
    assert f"{quality['oracle']['test_gauc']:.4f}" in text
