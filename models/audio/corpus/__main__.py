"""python -m models.audio.corpus build --out DIR [--max-clips N] [--seed S] [--jobs J]
python -m models.audio.corpus onsets --corpus DIR     (re)writes the onset task of a corpus built before it existed
python -m models.audio.corpus evaluate --corpus DIR --repository shipped_models [--report FILE]
    [--hear-baseline .hear-baseline-venv/bin/python]"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from models.audio.corpus.builder import add_onset_task, build


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models.audio.corpus")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="render the corpus into a folder, with its manifest and tasks")
    make.add_argument("--out", type=Path, required=True, help="an empty folder or an earlier corpus")
    make.add_argument("--max-clips", type=int, default=None, help="at most this many clips per source (seeded draw)")
    make.add_argument("--seed", type=int, default=0, help="draws the held-out sources and any subsample")
    make.add_argument("--jobs", type=int, default=3, help="renderers at once (they mostly wait on subprocesses)")
    onset = commands.add_parser("onsets", help="(re)write the timestamp task (event onsets) from the held-out clips")
    onset.add_argument("--corpus", type=Path, required=True, help="a folder `build` wrote")
    score = commands.add_parser("evaluate", help="linear probes on the held-out tasks: embedders vs log-mel statistics")
    score.add_argument("--corpus", type=Path, required=True, help="a folder `build` wrote")
    score.add_argument("--repository", type=Path, default=Path("shipped_models"),
                       help="model repository holding audio-passt-fp32 and audio-bow-fp32")
    score.add_argument("--task", action="append", default=None, help="only this task (repeatable)")
    score.add_argument("--seed", type=int, default=0)
    score.add_argument("--report", type=Path, default=Path("artifacts/audio-corpus-eval/quality.md"))
    score.add_argument("--hear-baseline", default=None, metavar="PYTHON",
                       help="also the public HEAR 2021 baseline (hearbaseline), run by this interpreter of its own "
                            "environment (make hear-baseline: .hear-baseline-venv/bin/python)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "build":
        manifest = build(args.out, args.seed, args.max_clips, args.jobs)
        totals = manifest["totals"]
        print(f"{args.out}: {totals['clips']} clips, {totals['hours']:.2f} h; summary in {args.out / 'manifest.md'}")
        return
    if args.command == "onsets":
        entry = add_onset_task(args.corpus)
        print(f"{args.corpus / entry['folder']}: {entry['train']['mixtures']} train and {entry['test']['mixtures']} "
              f"test mixtures, {entry['train']['events']} / {entry['test']['events']} events")
        return
    from models.audio.corpus.evaluate import HEAR_BASELINE, evaluate, render  # torch only for this command
    from models.audio.user_data import write_report

    started = time.perf_counter()
    modules = {HEAR_BASELINE: (args.hear_baseline, "hearbaseline")} if args.hear_baseline else None
    result = evaluate(args.corpus, args.repository, args.seed, args.task, hear_modules=modules, event_tasks=True)
    command = "python -m models.audio.corpus " + shlex.join(argv if argv is not None else sys.argv[1:])
    write_report(args.report, render(result, command, time.perf_counter() - started), result)


if __name__ == "__main__":
    main()
