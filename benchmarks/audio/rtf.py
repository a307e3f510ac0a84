"""Scene-embedding real-time factor of the shipped audio embedders against those of an earlier revision, in one
run (issue 25's goal: the re-shipped PaSST within 20% of the real-time factor it had when the issue was filed).

Both revisions' ONNX graphs (audio-passt-fp32 and audio-bow-fp32; the earlier ones read from git, `git show
REV:shipped_models/...`) go through the HEAR module (`hear_infersuite`: the front end in the graph, 1 s
windows, batches of 64), in interleaved rounds: per round and graph, `benchmarks.audio.report.real_time_factor`
(60 s of audio as 6 clips of 10 s; best of 3; with onnxruntime's default threads on the wall clock, and with one
thread on CPU time: what one core does). The ratio now / before of the one-thread figure per round, its median
over rounds, and the goal (>= 0.8). The run is valid when work outside it took at most 5% of the cores
(/proc/stat); run it alone (`make bench-audio-rtf`, through the heavy lock).

    python -m benchmarks.audio.rtf [--before e59cb36] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.audio.report import real_time_factor
from benchmarks.serving.machine import Window, all_cores, take_sample
from benchmarks.serving.validity import FOREIGN_SHARE_MAX

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("audio-passt-fp32", "audio-bow-fp32")
GOAL = 0.8  # issue 25: within 20% of the earlier real-time factor
BEFORE = "e59cb36"  # main when issue 25 was filed


def extract(revision: str, model: str, out: Path) -> Path:
    """The model's folder as committed at `revision` (its version 1: model.onnx, meta.json), under `out`."""
    folder = out / revision / model
    (folder / "1").mkdir(parents=True)
    for name in ("model.onnx", "meta.json"):
        blob = subprocess.run(["git", "show", f"{revision}:shipped_models/{model}/1/{name}"], cwd=ROOT,
                              check=True, capture_output=True).stdout
        (folder / "1" / name).write_bytes(blob)
    return folder


def measure(before: str, rounds: int, repository: Path) -> dict[str, Any]:
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as work:
        paths = {(model, "before"): extract(before, model, Path(work)) for model in MODELS}
        paths |= {(model, "now"): repository / model for model in MODELS}
        sample = take_sample(os.getpid())
        runs: list[dict[str, Any]] = []
        for index in range(rounds):
            for model in MODELS:
                for which in ("before", "now") if index % 2 == 0 else ("now", "before"):
                    figures = real_time_factor(paths[(model, which)])
                    runs.append({"round": index + 1, "model": model, "which": which, **figures})
                    print(json.dumps(runs[-1]), flush=True)
        cores = all_cores(Window(sample, take_sample(os.getpid())))
    shown = repository.resolve()  # reports never name this machine's paths
    return {"before": before, "now": sha, "rounds": rounds, "runs": runs,
            "repository": str(shown.relative_to(ROOT)) if shown.is_relative_to(ROOT) else shown.name,
            "cores": cores, "load_after": os.getloadavg()}


def ratios(result: dict[str, Any], model: str, key: str) -> list[float]:
    """now / before per round for `model` on `key` (rtf_per_core or rtf_wall)."""
    by = {(r["round"], r["which"]): r[key] for r in result["runs"] if r["model"] == model}
    return [by[(k, "now")] / by[(k, "before")] for k in range(1, result["rounds"] + 1)]


def render(result: dict[str, Any], command: str) -> str:
    cores = result["cores"]
    valid = cores["foreign_share"] <= FOREIGN_SHARE_MAX
    lines = [
        *([] if valid else [f"> **INVALID: work outside this benchmark took {cores['foreign_share']:.1%} of the "
                            "cores; no figure below may be quoted.**", ""]),
        "# Audio scene-embedding real-time factor: the shipped embedders against an earlier revision's", "",
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: "
        f"{os.cpu_count()} cores, Python {platform.python_version()}. Graphs: `{result['repository']}` at "
        f"{result['now']} (now) and `shipped_models` at {result['before']} (before, read from git). "
        f"{result['rounds']} interleaved rounds (the order within a round alternates); each figure: 60 s of audio "
        "as 6 clips of 10 s through the HEAR module (1 s windows, batches of 64), best of 3. Per core: audio "
        "seconds per CPU second of a one-thread session; wall: onnxruntime's default threads. Both cores over "
        f"the run (/proc/stat): idle {cores['idle_share']:.0%}, foreign work {cores['foreign_share']:.1%} "
        f"({', '.join(cores['offenders']) or 'nobody'}; valid when at most {FOREIGN_SHARE_MAX:.0%}); load "
        f"average after {[round(x, 2) for x in result['load_after']]}.", "",
        "| model | RTF per core, before (median) | RTF per core, now (median) | now / before per round | median "
        f"ratio | goal >= {GOAL} | wall RTF before / now (median) |", "|---|---|---|---|---|---|---|"]
    for model in MODELS:
        def median(which: str, key: str, model: str = model) -> float:
            return statistics.median(r[key] for r in result["runs"] if r["model"] == model and r["which"] == which)

        per_round = ratios(result, model, "rtf_per_core")
        ratio = statistics.median(per_round)
        lines.append(f"| {model} | {median('before', 'rtf_per_core'):.0f}x | {median('now', 'rtf_per_core'):.0f}x | "
                     f"{', '.join(f'{r:.3f}' for r in per_round)} | {ratio:.3f} | "
                     f"{'met' if ratio >= GOAL else 'missed'} | {median('before', 'rtf_wall'):.0f}x / "
                     f"{median('now', 'rtf_wall'):.0f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.audio.rtf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=BEFORE, help="the earlier revision (git) whose shipped graphs to compare")
    parser.add_argument("--repository", type=Path, default=ROOT / "shipped_models", help="the graphs of now")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "audio_rtf.md")
    args = parser.parse_args(argv)
    result = measure(args.before, args.rounds, args.repository)
    command = "python -m benchmarks.audio.rtf " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.out.write_text(render(result, command.strip()))
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(args.out.read_text())
    if result["cores"]["foreign_share"] > FOREIGN_SHARE_MAX:
        sys.exit("INVALID run: other work took more than its share of the cores")


if __name__ == "__main__":
    main()
