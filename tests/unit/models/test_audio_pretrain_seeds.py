"""Seed-level aggregation of the corpus-pretrained PaSST's held-out figures (models/audio/pretrain_seeds.py), on
fake quality.json files with known numbers: a steady +0.10 over log-mel statistics meets issue 25's goal, a
difference that flips sign across seeds or a steady +0.03 does not, and runs that cannot be compared (a missing
task, a log-mel accuracy that moves with the seed, a seed given twice) are refused with a clear error. Runs that
record per-clip results are compared by the hierarchical bootstrap over seeds x clips, for both probes."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from models.audio.passt import PasstConfig
from models.audio.pretrain import PRETRAINED, UNTRAINED, PretrainConfig
from models.audio.pretrain_seeds import ISSUE_TASKS, aggregate, main, render
from models.audio.user_data import BASELINE
from models.statistics import RULE, SEED_RULE, hierarchical_bootstrap

UNIT_HALF = 0.02  # every fake paired bootstrap interval: the difference +- this
LOG_MEL = 0.5
# task -> per seed (pretrained - log-mel, pretrained - untrained)
STEADY = [(0.10, 0.20)] * 4
FLIPPING = [(0.10, 0.05), (-0.08, 0.05), (0.12, 0.05), (-0.06, 0.05)]
SMALL = [(0.03, 0.01), (0.03, -0.01), (0.03, 0.01), (0.03, -0.01)]
DIFFERENCES = {"word_unseen_voice": STEADY, "voice_unseen_word": FLIPPING, "family_unseen_instrument": SMALL,
               "pitch_class_unseen_instrument": STEADY, "event_kind_unseen_package": STEADY}


def _difference(value: float) -> dict[str, object]:
    return {"difference": round(value, 4), "interval_95": [round(value - UNIT_HALF, 4), round(value + UNIT_HALF, 4)]}


def _task(over_log_mel: float, over_untrained: float, log_mel: float) -> dict[str, object]:
    pretrained = log_mel + over_log_mel
    accuracies = {PRETRAINED: pretrained, UNTRAINED: pretrained - over_untrained, BASELINE: log_mel}
    return {"description": "fake", "classes": 10, "train": 300, "test": 400, "chance": 0.1,
            "embedders": {title: {"accuracy": round(a, 4), "interval_95": [0, 1], "shuffled_label_control": 0.1}
                          for title, a in accuracies.items()},
            "differences": {f"{PRETRAINED} - {UNTRAINED}": _difference(over_untrained),
                            f"{PRETRAINED} - {BASELINE}": _difference(over_log_mel)}}


def write_run(root: Path, seed: int, tasks: dict[str, list[tuple[float, float]]] = DIFFERENCES,
              log_mel: float = LOG_MEL, passt_config: dict[str, object] | None = None) -> Path:
    run = root / f"seed{seed}-e40"
    run.mkdir()
    quality = {"corpus": "fake-corpus", "seed": seed,
               "tasks": {name: _task(*per_seed[seed], log_mel) for name, per_seed in tasks.items()},
               "pretraining": {"train_seconds": 1.0, "pretrain_config": asdict(PretrainConfig(seed=seed)),
                               "passt_config": asdict(PasstConfig()) if passt_config is None else passt_config}}
    (run / "quality.json").write_text(json.dumps(quality))
    return run


def test_steady_gain_meets_the_goal_a_flipping_or_small_one_does_not(tmp_path: Path) -> None:
    result = aggregate([write_run(tmp_path, seed) for seed in (3, 1, 0, 2)])
    assert result["seeds"] == [0, 1, 2, 3]
    steady = result["tasks"]["word_unseen_voice"]["comparisons"]["pretrained - log-mel statistics"]
    # no spread over seeds: the interval is the clips' half-width alone
    assert steady["mean"] == pytest.approx(0.10) and steady["seed_half_width"] == pytest.approx(0, abs=1e-9)
    assert steady["seed_level_interval_95"] == pytest.approx([0.08, 0.12])
    assert steady["goal"] == "met" and steady["verdict"] == "supported" and steady["seeds_above_0"] == 4
    flipping = result["tasks"]["voice_unseen_word"]["comparisons"]["pretrained - log-mel statistics"]
    # mean 0.02, sd 0.10456 over 4 seeds: t(3) 3.1824 * sd / 2 = 0.1664, with 0.02 in quadrature 0.1676
    assert flipping["mean"] == pytest.approx(0.02) and flipping["seeds_above_0"] == 2
    assert flipping["seed_level_interval_95"] == pytest.approx([0.02 - 0.1676, 0.02 + 0.1676], abs=2e-4)
    assert flipping["verdict"] == "unresolved" and flipping["goal"].startswith("not met (interval not above 0")
    small = result["tasks"]["family_unseen_instrument"]["comparisons"]["pretrained - log-mel statistics"]
    assert small["verdict"] == "supported" and small["goal"] == "not met (mean +0.030 < 0.05)"
    assert result["tasks_meeting_goal"] == ["word_unseen_voice", "pitch_class_unseen_instrument",
                                            "event_kind_unseen_package"]
    untrained = result["tasks"]["family_unseen_instrument"]["comparisons"]["pretrained - untrained (same seed)"]
    assert untrained["per_seed"] == {0: 0.01, 1: -0.01, 2: 0.01, 3: -0.01} and untrained["verdict"] == "unresolved"
    assert result["tasks"]["word_unseen_voice"]["accuracy"][BASELINE] == {s: LOG_MEL for s in range(4)}


def test_the_command_writes_the_report_and_its_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [str(write_run(tmp_path, seed)) for seed in range(4)]
    report = tmp_path / "reports" / "seeds.md"
    main(["--runs", *runs, "--report", str(report)])
    text = report.read_text()
    assert text.count("`python -m models.audio.pretrain_seeds --runs ") == 1 and "Written by" in text
    assert "3 of 5 tasks meet the goal" in text and "Fewer than the 5 seeds issue 27 asks for" in text
    assert "Student-t interval over training seeds" in text  # the rule is printed
    assert "Read strictly (the interval's low end, not only the mean, at or above 0.05), 3 of 5 tasks" in text
    figures = json.loads(report.with_suffix(".json").read_text())
    assert figures["tasks_meeting_goal"] == ["word_unseen_voice", "pitch_class_unseen_instrument",
                                             "event_kind_unseen_package"]
    assert figures["command"].endswith(f"--report {report}")
    capsys.readouterr()


def test_a_task_missing_from_one_seed_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    partial = {name: per_seed for name, per_seed in DIFFERENCES.items() if name != "event_kind_unseen_package"}
    runs = [write_run(tmp_path, 0), write_run(tmp_path, 1, partial), write_run(tmp_path, 2)]
    with pytest.raises(ValueError, match=r"task event_kind_unseen_package is missing from .* seed\(s\) \[1\]"):
        aggregate(runs)
    with pytest.raises(SystemExit) as exited:
        main(["--runs", *map(str, runs), "--report", str(tmp_path / "r.md")])
    assert exited.value.code == 2 and "refused: task event_kind_unseen_package" in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()
    elsewhere = tmp_path / "without-events"
    elsewhere.mkdir()
    with pytest.raises(ValueError, match="event_kind_unseen_package is missing"):  # an issue task no run scored
        aggregate([write_run(elsewhere, seed, partial) for seed in (0, 1)])
    assert "event_kind_unseen_package" in ISSUE_TASKS


def test_a_log_mel_accuracy_that_moves_with_the_seed_is_refused(tmp_path: Path) -> None:
    runs = [write_run(tmp_path, 0), write_run(tmp_path, 1, log_mel=0.52), write_run(tmp_path, 2)]
    with pytest.raises(ValueError, match=r"log-mel statistics \(nothing learned\) has accuracy .*not seeded"):
        aggregate(runs)


def test_runs_pretrained_otherwise_are_refused_a_field_a_run_predates_is_its_default(tmp_path: Path) -> None:
    before_pooling = {k: v for k, v in asdict(PasstConfig()).items() if k != "pooling"}
    older = write_run(tmp_path, 0, passt_config=before_pooling)  # written before PasstConfig.pooling existed
    result = aggregate([older, write_run(tmp_path, 1)])
    assert result["runs"][0]["config_fields_defaulted"] == ["passt_config.pooling (default 'mean')"]
    assert result["runs"][1]["config_fields_defaulted"] == []
    stats = write_run(tmp_path, 2, passt_config={**before_pooling, "pooling": "stats"})
    with pytest.raises(ValueError, match="seed2-e40 was pretrained or evaluated unlike"):
        aggregate([older, stats])


def test_a_seed_given_twice_or_a_missing_run_is_refused(tmp_path: Path) -> None:
    run = write_run(tmp_path, 0)
    with pytest.raises(ValueError, match="a seed is given twice"):
        aggregate([run, run])
    with pytest.raises(ValueError, match=r"seed7-e40/quality.json is missing"):
        aggregate([run, tmp_path / "seed7-e40"])


CLIPS = 60  # test clips of every fake per-clip task


def _right(rng: np.random.Generator, accuracy: float) -> np.ndarray:
    """CLIPS 0/1 with exactly round(accuracy * CLIPS) ones, at random places."""
    right = np.zeros(CLIPS)
    right[rng.permutation(CLIPS)[:round(accuracy * CLIPS)]] = 1
    return right


def _clip_task(rights: dict[str, dict[str, np.ndarray]], clips: list[str]) -> dict[str, object]:
    """A quality.json task with per-clip results, per probe: title -> (CLIPS,) 0/1."""
    def figures(right: dict[str, np.ndarray]) -> dict[str, object]:
        gains = {other: round(float((right[PRETRAINED] - right[other]).mean()), 4) for other in (UNTRAINED, BASELINE)}
        return {"embedders": {t: {"accuracy": round(float(r.mean()), 4), "interval_95": [0, 1]}
                              for t, r in right.items()},
                "differences": {f"{PRETRAINED} - {other}": {"difference": gain, "interval_95": [-1, 1]}
                                for other, gain in gains.items()}}
    return {"description": "fake", "classes": 2, "train": 100, "test": CLIPS, "chance": 0.5,
            **figures(rights["linear"]), "mlp": {**figures(rights["mlp"]), "validation":
                                                 {"fit": 70, "validation": 30, "held_out": "groups"}},
            "test_clips": clips, "correct": {probe: {t: "".join(str(int(v)) for v in r) for t, r in right.items()}
                                             for probe, right in rights.items()}}


def write_clip_run(root: Path, seed: int, baseline: dict[str, np.ndarray], gain: float,
                   clips: list[str] | None = None) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """A run whose pretrained PaSST gets `gain` more clips right than log-mel statistics (the same per-clip
    results in every seed), the untrained PaSST half that, on every task."""
    rng = np.random.default_rng(seed)
    rights = {probe: {BASELINE: right, PRETRAINED: _right(rng, right.mean() + gain),
                      UNTRAINED: _right(rng, right.mean() + gain / 2)} for probe, right in baseline.items()}
    run = write_run(root, seed, {name: [(0.0, 0.0)] * (seed + 1) for name in DIFFERENCES})  # tasks replaced below
    quality = json.loads((run / "quality.json").read_text())
    quality["tasks"] = {name: _clip_task(rights, clips or [f"c{i}.wav" for i in range(CLIPS)]) for name in DIFFERENCES}
    (run / "quality.json").write_text(json.dumps(quality))
    return run, rights


def test_per_clip_results_are_compared_by_a_hierarchical_bootstrap_for_both_probes(tmp_path: Path) -> None:
    rng = np.random.default_rng(99)
    baseline = {"linear": _right(rng, 0.5), "mlp": _right(rng, 0.4)}
    written = [write_clip_run(tmp_path, seed, baseline, gain) for seed, gain in zip(range(5), (0.2, 0.1, 0.3, 0.15,
                                                                                               0.25), strict=True)]
    result = aggregate([run for run, _ in written])
    assert result["probes"] == ["linear", "mlp"] and result["rules"] == {"hierarchical": RULE}
    for probe, figures in (("linear", result["tasks"]["word_unseen_voice"]),
                           ("mlp", result["tasks"]["word_unseen_voice"]["mlp"])):
        assert figures["method"] == "hierarchical"
        comparison = figures["comparisons"]["pretrained - log-mel statistics"]
        table = np.stack([rights[probe][PRETRAINED] - rights[probe][BASELINE] for _, rights in written])
        expected = hierarchical_bootstrap(table, resamples=5000, seed=0)
        assert comparison["method"] == "hierarchical" and comparison["resamples"] == 5000
        assert comparison["clips"] == CLIPS
        assert comparison["mean"] == pytest.approx(0.2) and comparison["interval_95"] == [expected.low, expected.high]
        assert comparison["per_seed"] == pytest.approx({0: 0.2, 1: 0.1, 2: 0.3, 3: 0.15, 4: 0.25})
        assert comparison["clips_only_interval_95"][1] - comparison["clips_only_interval_95"][0] < (
            expected.high - expected.low)  # the seeds' spread widens it
        assert comparison["verdict"] == expected.verdict and "seed_level_interval_95" not in comparison
        assert comparison["student_t_verdict"] == "supported"  # the cross-check agrees here
    assert result["tasks_meeting_goal_mlp"] == result["tasks_meeting_goal"]
    text = render(result, "cmd", "now")
    assert "hierarchical (seeds x clips) 95% interval" in text and "MLP probe: " in text
    assert "Rule (seed-level)" not in text and "5,000 resamples" in text


def test_seeds_scored_on_other_clips_or_with_per_clip_results_off_their_accuracy_are_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    baseline = {"linear": _right(rng, 0.5), "mlp": _right(rng, 0.5)}
    runs = [write_clip_run(tmp_path, 0, baseline, 0.1)[0]]
    runs.append(write_clip_run(tmp_path, 1, baseline, 0.1, clips=[f"c{i}.wav" for i in reversed(range(CLIPS))])[0])
    with pytest.raises(ValueError, match=r"test clips \(ids or order\) differ from seed 0's"):
        aggregate(runs)
    run = runs[0]
    quality = json.loads((run / "quality.json").read_text())
    task = quality["tasks"]["voice_unseen_word"]
    task["correct"]["mlp"][PRETRAINED] = "0" * CLIPS
    (run / "quality.json").write_text(json.dumps(quality))
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ValueError, match=r"per-clip MLP probe results of 'PaSST pretrained.* do not give"):
        aggregate([run, write_clip_run(other, 1, baseline, 0.1)[0]])


def test_runs_without_per_clip_results_keep_the_seed_level_interval(tmp_path: Path) -> None:
    result = aggregate([write_run(tmp_path, seed) for seed in range(3)])
    assert result["probes"] == ["linear"] and result["rules"] == {"seed-level": SEED_RULE}
    comparison = result["tasks"]["word_unseen_voice"]["comparisons"]["pretrained - log-mel statistics"]
    assert comparison["method"] == "seed-level" and comparison["interval_95"] == comparison["seed_level_interval_95"]


def _hear_report(baseline: dict[str, np.ndarray], hear: dict[str, np.ndarray],
                 clips: list[str] | None = None) -> dict[str, object]:
    """A corpus evaluation's JSON holding log-mel statistics' and the HEAR baseline's per-clip results."""
    from models.audio.user_data import HEAR_BASELINE

    def row(right: np.ndarray) -> str:
        return "".join(str(int(v)) for v in right)

    task = {"test_clips": clips or [f"c{i}.wav" for i in range(CLIPS)],
            "correct": {probe: {BASELINE: row(baseline[probe]), HEAR_BASELINE: row(hear[probe])}
                        for probe in baseline}}
    return {"tasks": {name: task for name in DIFFERENCES}}


def test_the_hear_baseline_from_a_corpus_report_is_paired_clip_by_clip_in_every_seed(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    baseline = {"linear": _right(rng, 0.5), "mlp": _right(rng, 0.4)}
    hear = {"linear": _right(rng, 0.6), "mlp": _right(rng, 0.3)}
    written = [write_clip_run(tmp_path, seed, baseline, gain) for seed, gain in zip(range(3), (0.2, 0.1, 0.3),
                                                                                     strict=True)]
    runs = [run for run, _ in written]
    result = aggregate(runs, _hear_report(baseline, hear))
    for probe, figures in (("linear", result["tasks"]["word_unseen_voice"]),
                           ("mlp", result["tasks"]["word_unseen_voice"]["mlp"])):
        comparison = figures["comparisons"]["pretrained - HEAR 2021 baseline"]
        table = np.stack([rights[probe][PRETRAINED] - hear[probe] for _, rights in written])
        expected = hierarchical_bootstrap(table, resamples=5000, seed=0)
        assert comparison["interval_95"] == [expected.low, expected.high]
        assert comparison["per_seed"] == pytest.approx(dict(enumerate(table.mean(1))))
        assert figures["hear_baseline_accuracy"] == pytest.approx(hear[probe].mean())
    text = render({**result, "hear_baseline_from": "reports/audio_corpus.json"}, "cmd", "now")
    assert "## Pretrained PaSST minus the public HEAR 2021 baseline, linear probe" in text
    assert "minus the public HEAR 2021 baseline" not in render(aggregate(runs), "cmd", "now")  # only when asked
    with pytest.raises(ValueError, match="other test clips"):
        aggregate(runs, _hear_report(baseline, hear, clips=[f"c{i}.wav" for i in reversed(range(CLIPS))]))
    moved = {"linear": 1 - baseline["linear"], "mlp": baseline["mlp"]}
    with pytest.raises(ValueError, match="log-mel statistics got other clips right"):
        aggregate(runs, _hear_report(moved, hear))
