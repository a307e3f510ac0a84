"""python -m models.audio.corpus build --out DIR [--max-clips N] [--seed S] [--jobs J]"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.audio.corpus.builder import build


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.audio.corpus")
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="render the corpus into a folder, with its manifest and tasks")
    make.add_argument("--out", type=Path, required=True, help="an empty folder or an earlier corpus")
    make.add_argument("--max-clips", type=int, default=None, help="at most this many clips per source (seeded draw)")
    make.add_argument("--seed", type=int, default=0, help="draws the held-out sources and any subsample")
    make.add_argument("--jobs", type=int, default=3, help="renderers at once (they mostly wait on subprocesses)")
    args = parser.parse_args(argv)
    manifest = build(args.out, args.seed, args.max_clips, args.jobs)
    totals = manifest["totals"]
    print(f"{args.out}: {totals['clips']} clips, {totals['hours']:.2f} h; summary in {args.out / 'manifest.md'}")


if __name__ == "__main__":
    main()
