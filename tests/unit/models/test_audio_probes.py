"""The held-out probes of models/audio/corpus/evaluate.py and models/audio/metrics.py: the MLP probe's grid is
chosen on validation clips only (a validation set that rewards the worse learner gets it), it is seeded and leaves
the caller's RNG alone, its validation split keeps groups whole where the labels allow, and every probe records
which test clips it got right, in one order, so that runs pair clip by clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.audio import metrics
from models.audio.corpus import evaluate as corpus_eval
from models.audio.metrics import MlpSetting, mlp_probe_predictions
from models.audio.user_data import Clip

LEARNS, BARELY = MlpSetting(3e-2, 16, 0.0), MlpSetting(1e-7, 16, 0.0)  # a useful step size, a useless one


def _two_blobs(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % 2
    return labels[:, None] * 3.0 + rng.standard_normal((n, 4)), labels


def test_a_setting_that_learns_beats_one_that_does_not_on_validation_and_test() -> None:
    rng = np.random.default_rng(0)
    fit, fit_labels = _two_blobs(rng, 80)
    validation, validation_labels = _two_blobs(rng, 40)
    test, test_labels = _two_blobs(rng, 40)
    predicted, choice = mlp_probe_predictions(fit, fit_labels, validation, validation_labels, test, 2,
                                              grid=(BARELY, LEARNS), max_epochs=15)
    assert choice["chosen"]["learning_rate"] == LEARNS.learning_rate and choice["chosen"]["validation_accuracy"] > 0.9
    assert (predicted == test_labels).mean() > 0.9


class _Constant(torch.nn.Module):
    """Predicts one class for every clip."""

    def __init__(self, label: int, classes: int):
        super().__init__()
        self.logits = torch.nn.functional.one_hot(torch.tensor(label), classes).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


def test_the_grid_point_the_validation_clips_favour_is_refit_on_fit_and_validation(monkeypatch) -> None:
    """Stand-in trainings: the grid point of width 10 predicts class 0 for every clip, that of width 20 class 1,
    in 3 and 7 epochs. Which one validation picks follows the validation labels alone; the refit gets the chosen
    point, its epochs and the fit + validation clips; the test labels are never given to the probe."""
    calls = []

    def fake_train(x, y, classes, setting, epochs, seed, validation=None):
        model = _Constant(setting.hidden // 10 - 1, classes)
        calls.append((setting.hidden, epochs, len(x), validation is not None))
        if validation is None:
            return model, epochs, (-1.0, -np.inf)
        accuracy = float((model(validation[0]).argmax(1) == validation[1]).float().mean())
        return model, setting.hidden // 10 * 4 - 1, (accuracy, -1.0)

    monkeypatch.setattr(metrics, "train_mlp", fake_train)
    grid = (MlpSetting(1e-3, 10, 0.1), MlpSetting(1e-3, 20, 0.1))
    fit, test = np.zeros((30, 2)), np.zeros((9, 2))
    for validation_labels, label in ((np.array([0, 0, 0, 1]), 0), (np.array([1, 1, 0, 1, 1]), 1)):
        calls.clear()
        predicted, choice = mlp_probe_predictions(fit, np.arange(30) % 2, np.ones((len(validation_labels), 2)),
                                                  validation_labels, test, 2, grid=grid)
        assert (predicted == label).all() and choice["chosen"]["hidden"] == 10 * (label + 1)
        assert choice["chosen"]["validation_accuracy"] == pytest.approx(max(validation_labels.mean(),
                                                                            1 - validation_labels.mean()), abs=1e-4)
        assert calls[:2] == [(10, 100, 30, True), (20, 100, 30, True)]  # each point on the fit clips only
        assert calls[2] == (10 * (label + 1), 3 + 4 * label, 30 + len(validation_labels), False)  # the refit


def test_the_mlp_probe_is_seeded_and_leaves_the_callers_rng_alone() -> None:
    rng = np.random.default_rng(1)
    fit, fit_labels = _two_blobs(rng, 60)
    validation, validation_labels = _two_blobs(rng, 20)
    test, _ = _two_blobs(rng, 30)
    torch.manual_seed(123)
    expected_draw = torch.rand(1)
    torch.manual_seed(123)
    runs = [mlp_probe_predictions(fit, fit_labels, validation, validation_labels, test, 2, seed=5,
                                  grid=(LEARNS, MlpSetting(1e-2, 8, 0.5)), max_epochs=8) for _ in range(2)]
    assert torch.rand(1) == expected_draw  # the probe drew from its own generator
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    assert runs[0][1]["chosen"]["epochs"] <= 8 and len(runs[0][1]["grid"]) == 2


def _clips(groups: str, per_group: int, labels: int, split: str = "train") -> list[Clip]:
    return [Clip(Path(f"{split}/{g}-{k}.wav"), f"label{k % labels}", g, split)
            for g in groups for k in range(per_group)]


def test_mlp_validation_holds_out_whole_groups_else_a_share_of_each_labels_clips() -> None:
    clips = _clips("abcdefghij", 6, 3) + _clips("t", 6, 3, "test")
    train = [i for i, c in enumerate(clips) if c.split == "train"]
    fit, validation, how = corpus_eval.mlp_validation_split(clips, train)
    assert how == "groups" and sorted(fit + validation) == train
    assert not {clips[i].group for i in fit} & {clips[i].group for i in validation}
    one_group_per_label = [Clip(Path(f"{g}-{k}.wav"), f"family{g}", g, "train") for g in "abcd" for k in range(10)]
    fit, validation, how = corpus_eval.mlp_validation_split(one_group_per_label, list(range(40)))
    assert how == "clips" and sorted(fit + validation) == list(range(40))
    assert [sum(one_group_per_label[i].label == f"family{g}" for i in validation) for g in "abcd"] == [3] * 4
    assert {one_group_per_label[i].label for i in fit} == {f"family{g}" for g in "abcd"}
    assert corpus_eval.mlp_validation_split(one_group_per_label, list(range(40)))[:2] == (fit, validation)


def test_probe_task_records_per_clip_results_in_test_order_and_pairs_them() -> None:
    rng = np.random.default_rng(2)
    clips = _clips("abcdef", 8, 2) + _clips("xyz", 8, 2, "test")
    y = np.array([int(c.label[-1]) for c in clips])
    matrix = {"informative": y[:, None] * 2.0 + rng.standard_normal((len(y), 3)),
              "noise": rng.standard_normal((len(y), 3)), "shipped": rng.standard_normal((len(y), 3))}
    train = [i for i, c in enumerate(clips) if c.split == "train"]
    test = [i for i, c in enumerate(clips) if c.split == "test"][::-1]  # any order: it is the recorded one
    task = corpus_eval.probe_task(matrix, y, clips, train, test, seed=0, reference="informative",
                                  mlp_titles=("informative", "noise"))
    assert set(task["correct"]["linear"]) == set(matrix) and set(task["correct"]["mlp"]) == {"informative", "noise"}
    for probe, figures in (("linear", task), ("mlp", task["mlp"])):
        right = {t: corpus_eval.decode_correct(text) for t, text in task["correct"][probe].items()}
        for title, r in right.items():
            assert r.shape == (len(test),) and r.mean() == pytest.approx(figures["embedders"][title]["accuracy"],
                                                                          abs=1e-4)
        difference = figures["differences"]["informative - noise"]["difference"]
        assert difference == pytest.approx((right["informative"] - right["noise"]).mean(), abs=1e-4)
        assert difference > 0.3
    # clip by clip: the linear probe's right/wrong on each test clip, in `test` order
    predicted = corpus_eval.linear_probe_predictions(matrix["noise"][train], y[train], matrix["noise"][test])
    assert task["correct"]["linear"]["noise"] == corpus_eval.encode_correct(predicted == y[test])
    assert task["mlp"]["validation"] == {"fit": 32, "validation": 16, "held_out": "groups"}
    assert set(task["mlp"]["differences"]) == {"informative - noise"}  # the MLP compares what it scored


def test_per_clip_correctness_round_trips_and_refuses_other_characters() -> None:
    right = np.array([1, 0, 0, 1, 1], bool)
    assert corpus_eval.encode_correct(right) == "10011"
    np.testing.assert_array_equal(corpus_eval.decode_correct("10011"), right.astype(float))
    with pytest.raises(ValueError, match="string of 0 and 1"):
        corpus_eval.decode_correct("10x1")
