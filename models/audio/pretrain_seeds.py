"""The corpus-pretrained PaSST over training seeds (issues 25 and 27): intervals over seeds and test clips on the
held-out tasks, for both probes (linear, MLP).

    python -m models.audio.pretrain_seeds --runs artifacts/audio-pretrain/eval-mlp/seed{0..4} \
        --report reports/audio_pretrain_seeds.md

Reads only each run's quality.json (written by `python -m models.audio.pretrain --seed S`, pretraining, or with
`--checkpoint` re-evaluating a recorded checkpoint); nothing is retrained. Per task and probe: each seed's accuracy
of the pretrained PaSST, the untrained PaSST of the same seed and log-mel statistics, and two comparisons,
"pretrained minus log-mel statistics" and "pretrained minus untrained (same seed)".

Where every run records which test clip each probe got right (`correct`, with the clips' ids in `test_clips`,
models.audio.corpus.evaluate), the comparison is `models.statistics.hierarchical_bootstrap` over the table of
per-clip differences, seeds x clips (paired: each seed's two embedders on the same clips, the clips the same in
every seed, checked by id), RESAMPLES resamples. Older runs keep each seed's paired difference and its bootstrap
interval over the test clips only; for them the fallback is `models.statistics.seed_level_interval` over the
seeds, the mean of the seeds' units-only half-widths standing in for that of the seed-averaged difference, an upper
bound (the spread of a mean of the seeds' per-clip differences is at most the mean of their spreads), so that
interval errs wide. The MLP probe is compared only where every run has it.

With `--hear-baseline-from REPORT_JSON` (a corpus evaluation that probed the public HEAR 2021 baseline, e.g.
reports/audio_corpus.json from `make report-audio-corpus`), a third comparison where the runs have per-clip results:
"pretrained minus the HEAR 2021 baseline". The baseline has no training seeds of its own (a fixed random projection,
probed by the same seeded probes), so its per-clip results are the same row in every seed; they pair with the runs
only when the report scored the same test clips (by id, in order) and its log-mel statistics got the same clips
right as the runs' (the same probe on the same features), else the report is refused.

Issue 25's goal, per task: the pretrained PaSST above log-mel statistics by at least GOAL_MARGIN with the
interval above 0 ("met"). Runs that cannot be compared are refused (ValueError): a task missing from a run, seeds
scored on different test clips, a log-mel statistics accuracy (per probe) that differs across seeds (nothing in it
is trained, its probes are seeded alike), per-clip results that disagree with the recorded accuracy, or
pretrainings that differ in anything but the seed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.audio.corpus.evaluate import decode_correct
from models.audio.passt import PasstConfig
from models.audio.pretrain import PRETRAINED, UNTRAINED, PretrainConfig
from models.audio.user_data import BASELINE, HEAR_BASELINE, write_report
from models.statistics import RULE, SEED_RULE, Interval, hierarchical_bootstrap, seed_level_interval

GOAL_MARGIN = 0.05  # issue 25: PaSST above log-mel statistics by at least this accuracy on every task
ISSUE_SEEDS = 5  # issue 27: claims rest on at least this many training seeds
ISSUE_TASKS = ("word_unseen_voice", "voice_unseen_word", "family_unseen_instrument",
               "pitch_class_unseen_instrument", "event_kind_unseen_package")
EMBEDDERS = {PRETRAINED: "PaSST pretrained", UNTRAINED: "PaSST untrained", BASELINE: "log-mel statistics"}
GOAL_COMPARISON, CONTROL_COMPARISON = "pretrained - log-mel statistics", "pretrained - untrained (same seed)"
COMPARISONS = {GOAL_COMPARISON: BASELINE, CONTROL_COMPARISON: UNTRAINED}
HEAR_COMPARISON = "pretrained - HEAR 2021 baseline"  # only with --hear-baseline-from
ROUNDING = 2e-4  # accuracies and differences are stored to 4 decimals: a recorded difference may miss by this
RESAMPLES = 5000  # hierarchical bootstrap draws (seeds, then clips)
PROBES = {"linear": "linear probe", "mlp": "MLP probe"}
HIERARCHICAL, SEED_LEVEL = "hierarchical", "seed-level"


@dataclass(frozen=True)
class Run:
    """One pretraining's held-out evaluation: its seed, where it lies, its quality.json."""

    seed: int
    path: Path
    quality: dict[str, Any]


def load_runs(paths: list[Path]) -> list[Run]:
    """The runs' quality.json in seed order; a missing file or a seed given twice is refused."""
    runs = []
    for path in paths:
        file = path / "quality.json"
        if not file.is_file():
            raise ValueError(f"{file} is missing: pretrain that seed first (python -m models.audio.pretrain)")
        quality = json.loads(file.read_text())
        runs.append(Run(int(quality["seed"]), path, quality))
    seeds = [run.seed for run in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"a seed is given twice: {seeds}")
    if not runs:
        raise ValueError("no runs given")
    return sorted(runs, key=lambda run: run.seed)


def _setup(run: Run) -> tuple[dict[str, Any], list[str]]:
    """What a run's pretraining and evaluation were, but for the seed, and the config fields its quality.json
    predates (read as today's defaults: seeds 0 and 1 were written before PasstConfig.pooling existed)."""
    pretraining, setup, filled = run.quality["pretraining"], {"corpus": run.quality["corpus"]}, []
    for key, defaults in (("pretrain_config", asdict(PretrainConfig())), ("passt_config", asdict(PasstConfig()))):
        recorded = pretraining[key]
        filled += [f"{key}.{field} (default {value!r})" for field, value in defaults.items() if field not in recorded]
        setup[key] = {k: v for k, v in {**defaults, **recorded}.items() if k != "seed"}
    return setup, filled


def _check_pretraining(runs: list[Run]) -> dict[int, list[str]]:
    """Every run pretrained alike but for its seed, evaluated on the same corpus; seed -> fields defaulted."""
    reference, filled = _setup(runs[0])[0], {}
    for run in runs:
        if run.quality["pretraining"]["pretrain_config"].get("seed") != run.seed:
            raise ValueError(f"{run.path}: evaluated with seed {run.seed} but pretrained with another")
        setup, filled[run.seed] = _setup(run)
        if setup != reference:
            raise ValueError(f"{run.path} was pretrained or evaluated unlike {runs[0].path}: {setup} vs {reference}")
    return filled


def task_names(runs: list[Run]) -> list[str]:
    """The tasks every run scored (the first run's order); a task missing from any run is refused."""
    names = list(dict.fromkeys(name for run in runs for name in run.quality["tasks"]))
    for name in [*names, *(t for t in ISSUE_TASKS if t not in names)]:
        missing = [run.seed for run in runs if name not in run.quality["tasks"]]
        if missing:
            raise ValueError(f"task {name} is missing from the run(s) of seed(s) {missing}: every seed must score "
                             "every task")
    return names


def _figures(task: dict[str, Any], probe: str) -> dict[str, Any]:
    """A task's figures of one probe: the linear probe's at the top (as before the MLP), the MLP's under "mlp"."""
    return task if probe == "linear" else task.get(probe, {})


def _task(run: Run, name: str, probe: str = "linear") -> dict[str, Any]:
    """One run's figures for a task, checked to hold the probe's embedders and differences compared here."""
    task = run.quality["tasks"][name]
    figures = _figures(task, probe)
    for title in EMBEDDERS:
        if title not in figures.get("embedders", {}):
            raise ValueError(f"seed {run.seed}, task {name}: no {PROBES[probe]} accuracy for {title!r}")
    for other in COMPARISONS.values():
        if f"{PRETRAINED} - {other}" not in figures.get("differences", {}):
            raise ValueError(f"seed {run.seed}, task {name}: no {PROBES[probe]} paired difference against {other!r}")
    return task


def _check_shared(runs: list[Run], name: str, probe: str) -> None:
    """Same test and train clips and the same (deterministic) log-mel statistics accuracy in every run."""
    tasks = [_task(run, name, probe) for run in runs]
    for key in ("train", "test", "classes"):
        counts = {run.seed: task[key] for run, task in zip(runs, tasks, strict=True)}
        if len(set(counts.values())) > 1:
            raise ValueError(f"task {name}: the seeds' {key} clip counts differ ({counts}): not the same clips")
    baseline = {run.seed: _figures(task, probe)["embedders"][BASELINE]["accuracy"]
                for run, task in zip(runs, tasks, strict=True)}
    if len(set(baseline.values())) > 1:
        raise ValueError(f"task {name}: {BASELINE} has accuracy {baseline} across seeds ({PROBES[probe]}); it learns "
                         "nothing and is not seeded, so the runs did not score the same features on the same clips")


def per_clip(runs: list[Run], name: str, probe: str) -> dict[str, np.ndarray] | None:
    """title -> (seeds, clips) 1 where the probe got the clip right, in one clip order for every seed; None when
    a run lacks per-clip results. Refused: test clips that differ between seeds (by id or order), or per-clip
    results that disagree with the run's recorded accuracy."""
    tasks = [_task(run, name, probe) for run in runs]
    if any(probe not in task.get("correct", {}) or "test_clips" not in task for task in tasks):
        return None
    clips = tasks[0]["test_clips"]
    table: dict[str, list[np.ndarray]] = {title: [] for title in EMBEDDERS}
    for run, task in zip(runs, tasks, strict=True):
        if task["test_clips"] != clips:
            raise ValueError(f"seed {run.seed}, task {name}: its test clips (ids or order) differ from seed "
                             f"{runs[0].seed}'s: the seeds cannot be paired clip by clip")
        for title, rows in table.items():
            right = decode_correct(task["correct"][probe].get(title, ""))
            recorded = _figures(task, probe)["embedders"][title]["accuracy"]
            if right.size != len(clips) or abs(right.mean() - recorded) > ROUNDING:
                raise ValueError(f"seed {run.seed}, task {name}: the per-clip {PROBES[probe]} results of {title!r} "
                                 f"({right.size} clips) do not give its recorded accuracy {recorded}")
            rows.append(right)
    return {title: np.stack(rows) for title, rows in table.items()}


def _hierarchical(runs: list[Run], right: dict[str, np.ndarray], other: str) -> dict[str, Any]:
    """The pretrained PaSST minus `other` from per-clip results: hierarchical bootstrap over seeds x clips."""
    differences = right[PRETRAINED] - right[other]  # (seeds, clips)
    found = hierarchical_bootstrap(differences, resamples=RESAMPLES, seed=0)
    clips_only = hierarchical_bootstrap(differences.mean(0, keepdims=True), resamples=RESAMPLES, seed=0)
    per_seed = differences.mean(1)
    # Cross-check: a percentile bootstrap of a handful of seeds runs narrow (models/statistics.py); the Student-t
    # seed-level interval, its clip part now exact (the clips-only interval), says whether that matters.
    student_t = seed_level_interval(per_seed, (clips_only.low, clips_only.high), units=found.units)
    return {"method": HIERARCHICAL, "per_seed": dict(zip([run.seed for run in runs], per_seed.tolist(), strict=True)),
            "mean": found.estimate, "sd_over_seeds": float(np.std(per_seed, ddof=1)) if len(runs) > 1 else None,
            "seeds_above_0": int((per_seed > 0).sum()), "interval_95": [found.low, found.high],
            "clips_only_interval_95": [clips_only.low, clips_only.high], "clips": found.units,
            "student_t_interval_95": [student_t.low, student_t.high], "student_t_verdict": student_t.verdict,
            "resamples": found.resamples, "verdict": found.verdict, "goal": goal_verdict(found)}


def compare(runs: list[Run], name: str, other: str, probe: str = "linear",
            right: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The pretrained PaSST minus `other` on one task with one probe: from per-clip results `right`
    (`per_clip`) the hierarchical bootstrap; without, per-seed paired differences, their units-only intervals
    and the seed-level interval. Either way with its verdicts; each seed's recorded difference is checked."""
    per_seed, unit_intervals = [], []
    for run in runs:
        figures = _figures(_task(run, name, probe), probe)
        recorded = figures["differences"][f"{PRETRAINED} - {other}"]
        accuracy = figures["embedders"][PRETRAINED]["accuracy"] - figures["embedders"][other]["accuracy"]
        if abs(recorded["difference"] - accuracy) > ROUNDING:
            raise ValueError(f"seed {run.seed}, task {name}: the recorded difference {recorded['difference']} is not "
                             f"the accuracies' difference {accuracy:.4f}")
        per_seed.append(float(recorded["difference"]))
        unit_intervals.append([float(v) for v in recorded["interval_95"]])
    if right is not None:
        return _hierarchical(runs, right, other)
    unit_interval = (float(np.mean([i[0] for i in unit_intervals])), float(np.mean([i[1] for i in unit_intervals])))
    found = seed_level_interval(np.array(per_seed), unit_interval, units=int(_task(runs[0], name)["test"]))
    unit_half = (unit_interval[1] - unit_interval[0]) / 2
    return {"method": SEED_LEVEL, "per_seed": dict(zip([run.seed for run in runs], per_seed, strict=True)),
            "per_seed_unit_interval_95": dict(zip([run.seed for run in runs], unit_intervals, strict=True)),
            "mean": found.estimate, "sd_over_seeds": float(np.std(per_seed, ddof=1)) if len(runs) > 1 else None,
            "seeds_above_0": sum(value > 0 for value in per_seed), "interval_95": [found.low, found.high],
            "seed_level_interval_95": [found.low, found.high], "unit_half_width": unit_half,
            "seed_half_width": float(np.sqrt(max(((found.high - found.low) / 2) ** 2 - unit_half ** 2, 0.0))),
            "verdict": found.verdict, "goal": goal_verdict(found)}


def goal_verdict(found: Interval) -> str:
    """Issue 25's goal for one task: "met" only with >= 2 seeds, the interval above 0 and the mean >= GOAL_MARGIN."""
    if found.seeds < 2:
        return "not met (one seed: training variance not measured)"
    reasons = []
    if found.low <= 0:
        reasons.append("interval not above 0")
    if round(found.estimate, 6) < GOAL_MARGIN:  # rounding: a mean of 4-decimal figures that is 0.05 counts
        reasons.append(f"mean {found.estimate:+.3f} < {GOAL_MARGIN}")
    return "met" if not reasons else "not met (" + "; ".join(reasons) + ")"


def probes_of(runs: list[Run], names: list[str]) -> list[str]:
    """The probes every run scored on every task: the linear one always, the MLP where all runs have it."""
    mlp = all("mlp" in run.quality["tasks"][name] for run in runs for name in names)
    return ["linear", "mlp"] if mlp else ["linear"]


def hear_baseline_rows(report: dict[str, Any], name: str, probe: str, clips: list[str],
                       log_mel: np.ndarray) -> np.ndarray | None:
    """The HEAR 2021 baseline's per-clip results on task `name` with `probe` from a corpus evaluation `report`, in
    the runs' clip order; None where the report has none. Refused (ValueError) when the report scored other clips
    or its log-mel statistics got other clips right than the runs' (`log_mel`, (clips,))."""
    task = report.get("tasks", {}).get(name)
    if task is None or HEAR_BASELINE not in task.get("correct", {}).get(probe, {}):
        return None
    if task.get("test_clips") != clips:
        raise ValueError(f"task {name}: the HEAR baseline's report scored other test clips (ids or order) than the "
                         "runs: it cannot be paired with them")
    theirs = decode_correct(task["correct"][probe][BASELINE])
    if not np.array_equal(theirs, log_mel):
        raise ValueError(f"task {name}: log-mel statistics got other clips right ({PROBES[probe]}) in the HEAR "
                         "baseline's report than in the runs: not the same probe on the same features")
    return decode_correct(task["correct"][probe][HEAR_BASELINE])


def probe_figures(runs: list[Run], name: str, probe: str,
                  hear_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """One task's per-seed accuracies and both comparisons with one probe; with `hear_report` and per-clip
    results, the third against the HEAR 2021 baseline (`hear_baseline_rows`)."""
    _check_shared(runs, name, probe)
    right = per_clip(runs, name, probe)
    figures: dict[str, Any] = {
        "method": SEED_LEVEL if right is None else HIERARCHICAL,
        "accuracy": {title: {run.seed: _figures(_task(run, name, probe), probe)["embedders"][title]["accuracy"]
                             for run in runs} for title in EMBEDDERS},
        "comparisons": {label: compare(runs, name, other, probe, right) for label, other in COMPARISONS.items()}}
    rows = None if right is None or hear_report is None else hear_baseline_rows(
        hear_report, name, probe, _task(runs[0], name, probe)["test_clips"], right[BASELINE][0])
    if right is not None and rows is not None:
        repeated = np.tile(rows, (len(runs), 1))  # no seeds of its own: the same row in every seed
        figures["comparisons"][HEAR_COMPARISON] = _hierarchical(runs, {**right, HEAR_BASELINE: repeated},
                                                                HEAR_BASELINE)
        figures["hear_baseline_accuracy"] = float(rows.mean())
    if probe == "mlp":  # how each seed's MLP was validated (the same split in every run)
        figures["validation"] = _figures(_task(runs[0], name), probe)["validation"]
    return figures


def aggregate(paths: list[Path], hear_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every task's per-seed accuracies and both comparisons over the runs at `paths`, per probe: the linear
    probe's at the task's top level (as before the MLP), the MLP's under "mlp"; with `hear_report`, the
    comparison with the HEAR 2021 baseline too (`probe_figures`)."""
    runs = load_runs(paths)
    defaulted = _check_pretraining(runs)
    names = task_names(runs)
    probes, tasks = probes_of(runs, names), {}
    for name in names:
        first = _task(runs[0], name)
        tasks[name] = {"description": first["description"], "classes": first["classes"], "train": first["train"],
                       "test": first["test"], "chance": first["chance"],
                       **probe_figures(runs, name, "linear", hear_report)}
        tasks[name].update({probe: probe_figures(runs, name, probe, hear_report) for probe in probes[1:]})
    methods = {_figures(task, probe)["method"] for task in tasks.values() for probe in probes}
    return {"seeds": [run.seed for run in runs],
            "runs": [{"seed": run.seed, "path": str(run.path), "epochs": run.quality["pretraining"]["pretrain_config"]
                      ["epochs"], "train_seconds": run.quality["pretraining"].get("train_seconds"),
                      "config_fields_defaulted": defaulted[run.seed]} for run in runs],
            "goal": f"PaSST pretrained above log-mel statistics by >= {GOAL_MARGIN} (interval above 0) on every task",
            "probes": probes, "rule": RULE if methods == {HIERARCHICAL} else SEED_RULE,
            "rules": {method: RULE if method == HIERARCHICAL else SEED_RULE for method in sorted(methods)},
            "tasks": tasks, **{_goal_key(probe): _met(tasks, probe) for probe in probes}}


def _goal_key(probe: str) -> str:
    return "tasks_meeting_goal" if probe == "linear" else f"tasks_meeting_goal_{probe}"


def _met(tasks: dict[str, Any], probe: str) -> list[str]:
    return [name for name, task in tasks.items()
            if _figures(task, probe)["comparisons"][GOAL_COMPARISON]["goal"] == "met"]


def _signed(values: Any) -> str:
    return ", ".join(f"{v:+.3f}" for v in values)


def _interval(comparison: dict[str, Any]) -> str:
    low, high = comparison["interval_95"]
    if comparison["method"] == HIERARCHICAL:
        clip_low, clip_high = comparison["clips_only_interval_95"]
        return f"{low:+.3f} to {high:+.3f} (clips only: {clip_low:+.3f} to {clip_high:+.3f})"
    return (f"{low:+.3f} to {high:+.3f} (± {comparison['seed_half_width']:.3f} seeds, "
            f"± {comparison['unit_half_width']:.3f} clips)")


def comparison_table(result: dict[str, Any], label: str, goal: bool, probe: str = "linear") -> list[str]:
    seeds = ", ".join(str(s) for s in result["seeds"])
    methods = {_figures(task, probe)["method"] for task in result["tasks"].values()}
    kind = "hierarchical (seeds x clips)" if methods == {HIERARCHICAL} else "seed-level"
    lines = [f"| task | test clips | per seed ({seeds}) | seeds above 0 | mean | sd over seeds | {kind} 95% "
             "interval | rule verdict |" + (" goal |" if goal else ""),
             "|---|---|---|---|---|---|---|---|" + ("---|" if goal else "")]
    for name, task in result["tasks"].items():
        c = _figures(task, probe)["comparisons"].get(label)
        if c is None:  # the HEAR baseline's report lacks this task
            continue
        sd = "" if c["sd_over_seeds"] is None else f"{c['sd_over_seeds']:.3f}"
        lines.append(f"| {name} | {task['test']} | {_signed(c['per_seed'].values())} | "
                     f"{c['seeds_above_0']} of {len(c['per_seed'])} | {c['mean']:+.3f} | {sd} | "
                     f"{_interval(c)} | {c['verdict']} |" + (f" **{c['goal']}** |" if goal else ""))
    return lines


def accuracy_table(result: dict[str, Any], probe: str = "linear") -> list[str]:
    seeds = result["seeds"]
    lines = ["| task | chance | embedder | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |",
             "|---|---|---|" + "---|" * (len(seeds) + 1)]
    for name, task in result["tasks"].items():
        for title, short in EMBEDDERS.items():
            values = list(_figures(task, probe)["accuracy"][title].values())
            lines.append(f"| {name} | {task['chance']:.3f} | {short} | "
                         + " | ".join(f"{v:.3f}" for v in values) + f" | {np.mean(values):.3f} |")
    return lines


def _runs_line(result: dict[str, Any]) -> str:
    parts = [f"seed {r['seed']} ({r['path']}, {r['epochs']} epochs"
             + (f", pretraining {r['train_seconds']:.0f} s)" if r["train_seconds"] is not None else ")")
             for r in result["runs"]]
    count = len(result["seeds"])
    short = "" if count >= ISSUE_SEEDS else f" **Fewer than the {ISSUE_SEEDS} seeds issue 27 asks for.**"
    by_fields: dict[str, list[str]] = {}
    for r in result["runs"]:
        if r["config_fields_defaulted"]:
            by_fields.setdefault(", ".join(r["config_fields_defaulted"]), []).append(str(r["seed"]))
    predates = "".join(f" The quality.json of seed(s) {', '.join(seeds)} lacks {fields}, written before that "
                       "field existed: read as today's default." for fields, seeds in by_fields.items())
    return (f"{count} training seeds, pretrained and evaluated alike but for the seed (checked): {', '.join(parts)}."
            f"{short}{predates}")


def _probe_notes(result: dict[str, Any], probe: str) -> list[str]:
    name_of = PROBES[probe]
    strict = [name for name, task in result["tasks"].items()
              if _figures(task, probe)["comparisons"][GOAL_COMPARISON]["interval_95"][0] >= GOAL_MARGIN]
    notes = [f"- Read strictly (the interval's low end, not only the mean, at or above {GOAL_MARGIN}), "
             f"{len(strict)} of {len(result['tasks'])} tasks meet the goal with the {name_of}: "
             f"{', '.join(strict) or 'none'}."]
    for name, task in result["tasks"].items():
        for label, c in _figures(task, probe)["comparisons"].items():
            above, seeds = c["seeds_above_0"], len(c["per_seed"])
            if c["verdict"] != "unresolved" or above not in (0, seeds):
                continue
            side = "above" if above else "below"
            if c["method"] == SEED_LEVEL and c["unit_half_width"] > c["seed_half_width"]:
                notes.append(f"- {name_of}, {name}, {label}: every seed {side} 0, the interval holds 0 through its "
                             f"clip part (± {c['unit_half_width']:.3f}, an upper bound) more than through the seeds' "
                             f"spread (± {c['seed_half_width']:.3f}).")
            elif c["method"] == HIERARCHICAL:
                low, high = c["clips_only_interval_95"]
                notes.append(f"- {name_of}, {name}, {label}: every seed {side} 0, yet the interval holds 0; resampling "
                             f"the clips alone gives {low:+.3f} to {high:+.3f}.")
    return notes + _cross_checks(result, probe)


def _cross_checks(result: dict[str, Any], probe: str) -> list[str]:
    """Where the Student-t seed-level interval disagrees with the hierarchical verdict, and where log-mel
    statistics score below chance (a failed baseline probe, not a strong embedder, then carries the comparison)."""
    notes = []
    for name, task in result["tasks"].items():
        figures = _figures(task, probe)
        for label, c in figures["comparisons"].items():
            if c["method"] == HIERARCHICAL and c["student_t_verdict"] != c["verdict"]:
                low, high = c["student_t_interval_95"]
                notes.append(f"- {PROBES[probe]}, {name}, {label}: the Student-t interval over the seeds (its clip "
                             f"part exact) is {low:+.3f} to {high:+.3f}, {c['student_t_verdict']}, where the "
                             f"hierarchical bootstrap says {c['verdict']}: a bootstrap of {len(c['per_seed'])} seeds "
                             "runs narrow, so read this verdict with care.")
        baseline = float(np.mean(list(figures["accuracy"][BASELINE].values())))
        if baseline < task["chance"]:
            notes.append(f"- {PROBES[probe]}, {name}: log-mel statistics score {baseline:.3f}, below chance "
                         f"({task['chance']:.3f}); the comparison with them there measures a failed probe more than "
                         "an embedding.")
    return notes


def _notes(result: dict[str, Any]) -> list[str]:
    notes = ["- Log-mel statistics are computed, not trained, and their probes are seeded alike in every run (the "
             "logistic regression draws nothing at random; the MLP's init, batch order and validation split are "
             "fixed): their accuracy is the same in every run on every task (checked, per probe; runs where it "
             "differs are refused)."]
    for probe in result["probes"]:
        notes += _probe_notes(result, probe)
    if "mlp" in result["probes"]:
        by_clips = [f"{name} ({task['mlp']['validation']['fit']} fit / {task['mlp']['validation']['validation']} "
                    "validation clips)" for name, task in result["tasks"].items()
                    if task["mlp"]["validation"]["held_out"] == "clips"]
        if by_clips:
            notes.append("- MLP probe: no group can be held out of the train clips of " + ", ".join(by_clips) + " "
                         "(one train group per label, or one group in all), so their validation clips are a seeded "
                         "share of each label's clips, from the same instruments or package as the fit clips: the "
                         "grid and the epochs are chosen on data easier than the test, a weaker choice than on the "
                         "other tasks.")
    for name, task in result["tasks"].items():
        if task["test"] < 100:
            notes.append(f"- {name} has only {task['test']} test clips ({task['train']} train clips, "
                         f"{task['classes']} classes): one clip moves an accuracy by {1 / task['test']:.3f}, so its "
                         "figures are coarse and its intervals wide; a verdict on it says little either way.")
    return notes


def _method_text(result: dict[str, Any]) -> str:
    methods = set(result["rules"])
    text = []
    if HIERARCHICAL in methods:
        text.append("Interval: `models.statistics.hierarchical_bootstrap` over the table of per-clip differences, "
                    f"training seeds x test clips ({RESAMPLES:,} resamples: the seeds drawn with replacement, then "
                    "the clips, the same clip draw for every seed; paired: each seed's two embedders probed on the "
                    "same clips, the clips the same in every seed, checked by id). Beside it, the clips-only interval "
                    "(the seed-averaged per-clip differences resampled over clips alone), which leaves training "
                    "variance out.")
    if SEED_LEVEL in methods:
        text.append("Interval (runs without per-clip results): `models.statistics.seed_level_interval` over the "
                    "seeds' paired differences (each seed: the pretrained PaSST and the other embedder probed on the "
                    "same test clips). Those quality.json files keep each seed's paired bootstrap interval over the "
                    "test clips, not the per-clip correctness, so the hierarchical bootstrap cannot run; the mean of "
                    "the seeds' units-only half-widths stands in for that of the seed-averaged difference, which it "
                    "bounds from above (up to bootstrap noise), so the interval errs wide. The two parts (seeds, "
                    "clips) are shown beside it.")
    return " ".join(text)


def _probe_sections(result: dict[str, Any], probe: str) -> list[str]:
    name_of, total = PROBES[probe], len(result["tasks"])
    met = len(result[_goal_key(probe)])
    lines = [f"## Pretrained PaSST minus log-mel statistics, {name_of}: {met} of {total} tasks meet the goal", ""]
    lines += comparison_table(result, GOAL_COMPARISON, goal=True, probe=probe)
    lines += ["", f"## Pretrained minus untrained PaSST (same config, same seed), {name_of}", ""]
    lines += comparison_table(result, CONTROL_COMPARISON, goal=False, probe=probe)
    if any(HEAR_COMPARISON in _figures(task, probe)["comparisons"] for task in result["tasks"].values()):
        lines += ["", f"## Pretrained PaSST minus the public HEAR 2021 baseline, {name_of}", "",
                  f"The baseline's per-clip results from {result['hear_baseline_from']} (no training seeds: the same "
                  "row in every seed; paired by clip id, its log-mel statistics checked to get the same clips right "
                  "as the runs').", ""]
        lines += comparison_table(result, HEAR_COMPARISON, goal=False, probe=probe)
    return [*lines, ""]


PROBE_TEXT = {
    "linear": "linear probe: a standardised logistic regression trained on each task's train clips",
    "mlp": "MLP probe (hear-eval-kit's protocol, `models.audio.metrics.mlp_probe_predictions`): one hidden layer, "
           "dropout, Adam, early stopping; a learning rate x width x dropout grid chosen on a validation split of "
           "each task's train clips (whole groups where the labels allow), refit on all train clips"}


def render(result: dict[str, Any], command: str, written: str) -> str:
    lines = [
        "# Corpus-pretrained PaSST over training seeds, on the corpus's held-out tasks (issues 25 and 27)", "",
        f"Written by `{command}` on {written}. It reads only each run's quality.json, written by "
        "`python -m models.audio.pretrain --corpus artifacts/audio-corpus --out <run> --epochs 40 --seed S` or, "
        "re-evaluating that run's checkpoint, `... --checkpoint <run>/pretrain.pt --seed S --out <folder>` "
        "(`make report-audio-pretrain-seeds` runs what is missing, then this); nothing is retrained here.", "",
        _runs_line(result), "",
        f"Goal (issue 25): {result['goal']}. A task's goal verdict is **met** only when the 95% interval of the "
        f"difference lies above 0 and the mean difference is >= {GOAL_MARGIN}.", "",
        "Probes, scored on each task's test clips: " + "; ".join(PROBE_TEXT[p] for p in result["probes"]) + ".", "",
        _method_text(result), "",
        *(f"Rule ({method}): {rule}." for method, rule in result["rules"].items()), ""]
    for probe in result["probes"]:
        lines += _probe_sections(result, probe)
    for probe in result["probes"]:
        lines += [f"## Accuracy per seed ({PROBES[probe]} on the test clips)", "", *accuracy_table(result, probe), ""]
    lines += ["## Notes", "", *_notes(result)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m models.audio.pretrain_seeds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True,
                        help="pretraining out dirs (python -m models.audio.pretrain --out), one per seed")
    parser.add_argument("--report", type=Path, required=True, help="markdown report; its .json is written beside it")
    parser.add_argument("--hear-baseline-from", type=Path, default=None, metavar="REPORT_JSON",
                        help="a corpus evaluation with the HEAR 2021 baseline's per-clip results "
                             "(reports/audio_corpus.json): adds the comparison with it")
    args = parser.parse_args(argv)
    command = "python -m models.audio.pretrain_seeds " + shlex.join(argv if argv is not None else sys.argv[1:])
    hear_report = None if args.hear_baseline_from is None else json.loads(args.hear_baseline_from.read_text())
    try:
        result = aggregate(args.runs, hear_report)
    except ValueError as error:
        parser.exit(2, f"refused: {error}\n")
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    result = {"command": command, "written": written, **result,
              **({"hear_baseline_from": str(args.hear_baseline_from)} if hear_report is not None else {})}
    write_report(args.report, render(result, command, written), result)
    return result


if __name__ == "__main__":
    main()
