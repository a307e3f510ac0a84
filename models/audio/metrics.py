"""Embedding quality figures: linear probe, nearest-neighbour retrieval mAP, onset F-measure.

Onsets from timestamp embeddings (no training): the novelty at time t is the cosine distance
between the embeddings half a model window after and before t. A window centred at t sees the
event that starts at t with exactly half of itself, so the novelty peaks at onsets. Peaks above
a threshold, at least `min_gap_s` apart, are the detections; a detection within +-200 ms of an
unmatched reference onset is a hit (one-to-one matching, as in mir_eval.onset).
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def linear_probe_predictions(train: np.ndarray, train_labels: np.ndarray, test: np.ndarray) -> np.ndarray:
    """The test labels a logistic regression (standardised inputs) trained on frozen embeddings predicts."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    probe.fit(train, train_labels)
    return np.asarray(probe.predict(test))


def linear_probe_accuracy(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray
) -> float:
    """Accuracy of a logistic regression trained on frozen embeddings."""
    return float(np.mean(linear_probe_predictions(train, train_labels, test) == test_labels))


def retrieval_map(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Mean average precision of cosine nearest-neighbour retrieval, each clip querying the rest."""
    unit = embeddings / (np.linalg.norm(embeddings, axis=1, keepdims=True) + 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    order = np.argsort(-similarity, axis=1)[:, :-1]  # (N, N-1), the query itself dropped
    relevant = labels[order] == labels[:, None]  # (N, N-1)
    hits = np.cumsum(relevant, axis=1)
    precision = hits / np.arange(1, relevant.shape[1] + 1)
    per_query = (precision * relevant).sum(1) / np.maximum(relevant.sum(1), 1)
    return float(per_query.mean())


def novelty(embeddings: np.ndarray, lag: int) -> np.ndarray:
    """(T, D) timestamp embeddings -> (T,) cosine distance between t + lag and t - lag.

    With lag = half a window, the compared windows reach from t - 2 lag to t + 2 lag; where that
    passes the clip's edges, one of them is part zero padding, which looks like an onset, so
    the curve is 0 there (the first and last window length of a clip are not searched)."""
    unit = embeddings / (np.linalg.norm(embeddings, axis=1, keepdims=True) + 1e-12)
    curve = np.zeros(len(unit))
    if len(unit) > 4 * lag:
        distance = 1.0 - np.sum(unit[2 * lag :] * unit[: -2 * lag], axis=1)  # index i <-> t = i + lag
        curve[2 * lag : len(unit) - 2 * lag] = distance[lag : len(unit) - 3 * lag]
    return curve


def pick_peaks(curve: np.ndarray, times_s: np.ndarray, threshold: float, min_gap_s: float) -> np.ndarray:
    """Local maxima above threshold, greedily keeping the strongest within min_gap_s."""
    is_peak = (curve[1:-1] >= curve[:-2]) & (curve[1:-1] > curve[2:]) & (curve[1:-1] > threshold)
    candidates = np.flatnonzero(is_peak) + 1
    kept: list[int] = []
    for index in candidates[np.argsort(-curve[candidates])]:
        if all(abs(times_s[index] - times_s[k]) >= min_gap_s for k in kept):
            kept.append(int(index))
    return np.sort(times_s[kept]) if kept else np.zeros(0)


def onset_f_measure(
    reference: list[np.ndarray], estimated: list[np.ndarray], tolerance_s: float = 0.2
) -> dict[str, float]:
    """Precision / recall / F over many clips, one-to-one matching within +-tolerance."""
    hits = n_ref = n_est = 0
    for ref, est in zip(reference, estimated, strict=True):
        n_ref, n_est = n_ref + len(ref), n_est + len(est)
        unmatched = list(ref)
        for onset in sorted(est):
            if unmatched:
                nearest = int(np.argmin(np.abs(np.array(unmatched) - onset)))
                if abs(unmatched[nearest] - onset) <= tolerance_s:
                    hits += 1
                    unmatched.pop(nearest)
    precision, recall = hits / max(n_est, 1), hits / max(n_ref, 1)
    f = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"precision": precision, "recall": recall, "f_measure": f, "reference_onsets": n_ref}


def detect_onsets(
    embeddings: np.ndarray, timestamps_ms: np.ndarray, window_s: float, threshold: float, min_gap_s: float = 0.5
) -> np.ndarray:
    """Onset times (s) from one clip's timestamp embeddings."""
    hop_s = float(timestamps_ms[1] - timestamps_ms[0]) / 1000.0
    lag = max(1, round(window_s / 2 / hop_s))
    return pick_peaks(novelty(embeddings, lag), timestamps_ms / 1000.0, threshold, min_gap_s)


def best_threshold(
    embeddings: list[np.ndarray], timestamps_ms: list[np.ndarray], onsets: list[list[float]], window_s: float
) -> float:
    """The novelty threshold with the best F-measure (chosen on tuning clips, not the scored ones)."""
    grid = np.linspace(0.02, 0.8, 40)
    scores = [
        onset_f_measure(
            [np.array(o) for o in onsets],
            [detect_onsets(e, t, window_s, th) for e, t in zip(embeddings, timestamps_ms, strict=True)],
        )["f_measure"]
        for th in grid
    ]
    return float(grid[int(np.argmax(scores))])
