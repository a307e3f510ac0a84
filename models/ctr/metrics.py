"""Evaluation metrics of Zhou et al., "Deep Interest Network for CTR Prediction" (KDD 2018).

- AUC over all impressions (sklearn's `roc_auc_score`).
- GAUC, eq. 10: user-weighted AUC, sum_i #impression_i * AUC_i / sum_i #impression_i, over the
  users whose impressions hold both a click and a non-click (AUC is undefined otherwise).
- RelaImpr, eq. 11: (AUC(model) - 0.5) / (AUC(base) - 0.5) - 1, in percent.
- The oracle: the same AUC/GAUC scored with the true click probability of the synthetic data,
  the ceiling no model can pass except by chance.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve over all impressions."""
    return float(roc_auc_score(labels, scores))


def gauc(labels: np.ndarray, scores: np.ndarray, user_index: np.ndarray) -> float:
    """User-weighted AUC (paper eq. 10); users with a single class are skipped."""
    order = np.argsort(user_index, kind="stable")
    _, starts, counts = np.unique(user_index[order], return_index=True, return_counts=True)
    weighted, weight = 0.0, 0
    for start, count in zip(starts, counts, strict=True):
        rows = order[start : start + count]
        positives = labels[rows].sum()
        if positives == 0 or positives == count:
            continue
        weighted += count * roc_auc_score(labels[rows], scores[rows])
        weight += count
    if weight == 0:
        raise ValueError("GAUC needs at least one user with both clicks and non-clicks")
    return float(weighted / weight)


def rela_impr(model_auc: float, base_auc: float) -> float:
    """Relative improvement over the base model (paper eq. 11), in percent."""
    return ((model_auc - 0.5) / (base_auc - 0.5) - 1.0) * 100.0


def score_report(labels: np.ndarray, scores: np.ndarray, user_index: np.ndarray) -> dict[str, float]:
    """{"auc", "gauc"} for one set of scores."""
    return {"auc": auc(labels, scores), "gauc": gauc(labels, scores, user_index)}


def per_user_auc(labels: np.ndarray, scores: np.ndarray, user_index: np.ndarray) -> dict[int, tuple[int, float]]:
    """{user: (#impressions, AUC)} for the users with both a click and a non-click; the GAUC is
    the #impressions-weighted mean of these AUCs."""
    order = np.argsort(user_index, kind="stable")
    users, starts, counts = np.unique(user_index[order], return_index=True, return_counts=True)
    found = {}
    for user, start, count in zip(users, starts, counts, strict=True):
        rows = order[start : start + count]
        positives = labels[rows].sum()
        if 0 < positives < count:
            found[int(user)] = (int(count), float(roc_auc_score(labels[rows], scores[rows])))
    return found


def paired_bootstrap(weights: np.ndarray, difference: np.ndarray, resamples: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """GAUC difference sum(w * d) / sum(w) over users and its 95% percentile interval when the
    users are resampled with replacement -> (difference, low, high).

    weights (U,) impressions per user; difference (U,) a per-user AUC difference of two models
    scored on the same users (averaged over seeds by the caller), so the pairing is kept."""
    rng = np.random.default_rng(seed)
    point = float((weights * difference).sum() / weights.sum())
    picks = rng.integers(0, len(weights), (resamples, len(weights)))
    w = weights[picks]
    samples = (w * difference[picks]).sum(1) / w.sum(1)
    low, high = np.percentile(samples, [2.5, 97.5])
    return point, float(low), float(high)
