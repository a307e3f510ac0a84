"""AUC, user-weighted GAUC (paper eq. 10) and RelaImpr (eq. 11) on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from models.ctr.metrics import auc, gauc, rela_impr, score_report


def test_auc_counts_correctly_ordered_pairs():
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.2, 0.8, 0.6, 0.4])  # positive > negative in 1 of 4 pairs
    assert auc(labels, scores) == pytest.approx(0.25)


def test_gauc_weights_users_by_impressions_and_skips_single_class_users():
    labels = np.array([1, 0, 0, 1, 0, 1, 0, 0, 0])
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.8, 0.6, 0.4, 0.3, 0.7])
    users = np.array([7, 7, 7, 2, 2, 2, 2, 5, 5])  # user 5 never clicks: skipped
    # user 7: AUC 1 over 3 impressions; user 2: AUC 0.25 over 4 impressions
    assert gauc(labels, scores, users) == pytest.approx((3 * 1.0 + 4 * 0.25) / 7)


def test_gauc_does_not_depend_on_impression_order():
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 60), rng.random(60)
    users = rng.integers(0, 6, 60)
    order = rng.permutation(60)
    assert gauc(labels, scores, users) == pytest.approx(gauc(labels[order], scores[order], users[order]))


def test_gauc_rejects_data_without_any_two_class_user():
    with pytest.raises(ValueError, match="both clicks and non-clicks"):
        gauc(np.array([1, 1, 0]), np.array([0.1, 0.2, 0.3]), np.array([0, 0, 1]))


def test_rela_impr_matches_paper_equation_11():
    assert rela_impr(0.7, 0.6) == pytest.approx(100.0)
    assert rela_impr(0.6, 0.6) == pytest.approx(0.0)
    assert rela_impr(0.55, 0.6) == pytest.approx(-50.0)


def test_score_report_holds_both_figures():
    report = score_report(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.8, 0.2]), np.zeros(4))
    assert report == {"auc": 1.0, "gauc": 1.0}
