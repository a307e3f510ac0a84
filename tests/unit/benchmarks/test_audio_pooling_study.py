"""The pooling study's comparison (benchmarks/audio/pooling.py): the paired stats - mean interval over seeds
and clips finds a pooling that carries the label and one that does not, the validation split never scores
a test clip, and the decision rule ships only a validation win on voice with no loss anywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.audio import pooling
from models.audio.user_data import BASELINE, Clip


def _task(rng: np.random.Generator) -> tuple[list[Clip], dict[str, dict[str, np.ndarray]]]:
    clips = [Clip(Path(f"{g}-{k}.wav"), f"voice{k % 3}", g, "train") for g in "abcdefghij" for k in range(12)]
    clips += [Clip(Path(f"{g}-{k}.wav"), f"voice{k % 3}", g, "test") for g in "uvw" for k in range(12)]
    label = np.array([int(c.label[-1]) for c in clips])
    informative = {str(c.path): np.eye(3)[y] * 3 + rng.normal(0, 0.5, 3) for c, y in zip(clips, label, strict=True)}
    noise = {str(c.path): rng.normal(0, 1, 3) for c in clips}
    features = {BASELINE: noise, "mean/0": noise, "mean/1": noise, "stats/0": informative, "stats/1": informative}
    return clips, features


def test_a_pooling_that_carries_the_label_is_supported_on_validation_and_test() -> None:
    clips, features = _task(np.random.default_rng(0))
    validation = pooling.compare_task(clips, features, [0, 1], validation=True)
    test = pooling.compare_task(clips, features, [0, 1], validation=False)
    assert validation["fit"] + validation["scored"] == 120 and test["scored"] == 36  # validation: train clips only
    for r in (validation, test):
        assert r["accuracy"]["stats/0"] > 0.9 and r["stats - mean"]["estimate"] > 0.4
        assert r["stats - mean"]["verdict"] == "supported" and r["stats - mean"]["interval_95"][0] > 0
    assert pooling.decide({"validation": {pooling.VOICE: validation}, "test": {pooling.VOICE: test}})[0]


def test_the_decision_needs_voice_supported_on_validation_and_no_loss_anywhere() -> None:
    def row(verdict: str) -> dict:
        return {"stats - mean": {"verdict": verdict}}

    win, tie, loss = row("supported"), row("unresolved"), row("contradicted")
    assert pooling.decide({"validation": {pooling.VOICE: win, "word": tie}, "test": {pooling.VOICE: tie}})[0]
    assert not pooling.decide({"validation": {pooling.VOICE: tie}, "test": {pooling.VOICE: win}})[0]
    shipped, reason = pooling.decide({"validation": {pooling.VOICE: win}, "test": {"word": loss}})
    assert not shipped and "test/word" in reason


def test_a_split_with_one_group_is_not_scored() -> None:
    clips = [Clip(Path(f"a-{k}.wav"), f"kind{k % 2}", "a", "train") for k in range(6)]
    features = {t: {str(c.path): np.zeros(2) for c in clips} for t in (BASELINE, "mean/0", "stats/0")}
    assert pooling.compare_task(clips, features, [0], validation=True) is None
