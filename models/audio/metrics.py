"""Embedding quality figures: linear probe, MLP probe, nearest-neighbour retrieval mAP, onset F-measure.

MLP probe (the downstream predictor of hear-eval-kit, Turian et al., "HEAR: Holistic Evaluation of Audio
Representations", PMLR 176, 2022, section 4): one hidden layer with dropout on standardised frozen embeddings,
Adam, early stopping on a validation split; each point of a small grid (learning rate x hidden width x
dropout) is trained on the fit clips and the point with the best validation accuracy (then loss) is chosen,
never looking at the test clips; it is then refit on fit + validation clips for the epochs validation chose.
Seeded (its own torch RNG, the caller's untouched) and deterministic at a fixed thread count.

Onsets from timestamp embeddings (no training): the novelty at time t is the cosine distance
between the embeddings half a model window after and before t. A window centred at t sees the
event that starts at t with exactly half of itself, so the novelty peaks at onsets. Peaks above
a threshold, at least `min_gap_s` apart, are the detections; a detection within +-200 ms of an
unmatched reference onset is a hit (one-to-one matching, as in mir_eval.onset). `onset_matches` counts the
hits of a maximum one-to-one matching (mir_eval.util.match_events' definition, the HEAR event tasks' scoring);
the greedy matching of `onset_f_measure` can find fewer where estimates crowd.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching
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


@dataclass(frozen=True)
class MlpSetting:
    """One grid point of the MLP probe."""

    learning_rate: float  # Adam
    hidden: int  # units of the one hidden layer
    dropout: float  # after the hidden layer's ReLU


# 8 points: hear-eval-kit's 1024 units and its learning rates' range (3.2e-5 .. 3.2e-3) cut to what 2 cores afford
MLP_GRID = tuple(MlpSetting(lr, hidden, dropout) for lr in (3.2e-3, 3.2e-4) for hidden in (256, 1024)
                 for dropout in (0.1, 0.5))
MLP_MAX_EPOCHS = 100  # passes over the fit clips at most
MLP_PATIENCE = 10  # epochs without a better validation accuracy before a grid point stops
MLP_BATCH = 256  # clips per Adam step


def _standardised(fit: np.ndarray, *others: np.ndarray) -> list[torch.Tensor]:
    """Every array scaled by the fit rows' per-dimension mean and std (a constant dimension by 1)."""
    mean, std = fit.mean(0), fit.std(0)
    std = np.where(std > 0, std, 1.0)
    return [torch.from_numpy(((a - mean) / std).astype(np.float32)) for a in (fit, *others)]


def _mlp(inputs: int, classes: int, setting: MlpSetting) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(inputs, setting.hidden), torch.nn.ReLU(),
                               torch.nn.Dropout(setting.dropout), torch.nn.Linear(setting.hidden, classes))


def train_mlp(x: torch.Tensor, y: torch.Tensor, classes: int, setting: MlpSetting, epochs: int, seed: int,
              validation: tuple[torch.Tensor, torch.Tensor] | None = None
              ) -> tuple[torch.nn.Sequential, int, tuple[float, float]]:
    """(model, best epoch, its validation (accuracy, -loss)). With `validation`, the epochs run until MLP_PATIENCE
    pass without a better accuracy (a lower loss alone does not extend the run, as a falling loss on easy data
    would keep every run going) and the model returned is the best epoch's by (accuracy, -loss); without, all
    `epochs` run."""
    with torch.random.fork_rng(devices=[]):  # init and dropout draw from a seeded RNG, the caller's is restored
        torch.manual_seed(seed)
        order = torch.Generator().manual_seed(seed)
        model = _mlp(x.shape[1], classes, setting)
        optimizer = torch.optim.Adam(model.parameters(), lr=setting.learning_rate)
        best, best_epoch, best_state, last_gain = (-1.0, -np.inf), epochs, None, 0
        for epoch in range(1, epochs + 1):
            model.train()
            for batch in torch.randperm(len(x), generator=order).split(MLP_BATCH):
                loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if validation is None:
                continue
            score = _score(model, *validation)
            if score[0] > best[0]:
                last_gain = epoch
            if score > best:
                best, best_epoch = score, epoch
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            if epoch - last_gain >= MLP_PATIENCE:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
    return model.eval(), best_epoch, best


@torch.no_grad()
def _score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, -mean cross-entropy): higher is better, the loss breaking accuracy ties."""
    model.eval()
    logits = model(x)
    accuracy = float((logits.argmax(1) == y).float().mean())
    return round(accuracy, 6), -float(torch.nn.functional.cross_entropy(logits, y))


def mlp_probe_predictions(fit: np.ndarray, fit_labels: np.ndarray, validation: np.ndarray,
                          validation_labels: np.ndarray, test: np.ndarray, classes: int, seed: int = 0,
                          grid: tuple[MlpSetting, ...] = MLP_GRID,
                          max_epochs: int = MLP_MAX_EPOCHS) -> tuple[np.ndarray, dict[str, Any]]:
    """The test labels (0 .. classes - 1) the grid's validation-chosen MLP predicts after its refit on fit +
    validation clips, and what was chosen. Only fit and validation labels are read (test ones are not given)."""
    x_fit, x_validation = _standardised(fit, validation)
    y_fit, y_validation = torch.from_numpy(fit_labels).long(), torch.from_numpy(validation_labels).long()
    trials = []
    for setting in grid:
        _, epochs, (accuracy, negative_loss) = train_mlp(x_fit, y_fit, classes, setting, max_epochs, seed,
                                                         (x_validation, y_validation))
        trials.append({**asdict(setting), "epochs": epochs, "validation_accuracy": round(accuracy, 4),
                       "validation_loss": round(-negative_loss, 4)})
    chosen = max(range(len(grid)), key=lambda i: (trials[i]["validation_accuracy"], -trials[i]["validation_loss"]))
    everything = np.concatenate([fit, validation])
    x_all, x_test = _standardised(everything, test)
    y_all = torch.from_numpy(np.concatenate([fit_labels, validation_labels])).long()
    model, _, _ = train_mlp(x_all, y_all, classes, grid[chosen], trials[chosen]["epochs"], seed)
    with torch.no_grad():
        predicted = model(x_test).argmax(1).numpy()
    return predicted, {"chosen": trials[chosen], "grid": trials}


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


def onset_matches(reference: np.ndarray, estimated: np.ndarray, tolerance_s: float = 0.2) -> int:
    """Hits of a maximum one-to-one matching of reference and estimated onsets (s) within +-tolerance_s."""
    if len(reference) == 0 or len(estimated) == 0:
        return 0
    close = np.abs(np.asarray(reference)[:, None] - np.asarray(estimated)[None, :]) <= tolerance_s
    matching = maximum_bipartite_matching(csr_matrix(close), perm_type="column")
    return int((matching >= 0).sum())


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
