"""`python -m exporters.build`: trains (when no checkpoint exists) and exports the default
models of every family into a Triton-layout model repository. The families are found by
convention (exporters/families.py): each one's `exporters/<family>.py` defines `build`."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from tqdm import tqdm

from exporters.families import builders
from infersuite.services.families import MissingFamilyPart, family_names
from models.console import one_line_per_warning_kind


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m exporters.build", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("model_repository"), help="model repository")
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="training checkpoints")
    parser.add_argument("--families", nargs="+", default=family_names(), choices=family_names())
    parser.add_argument("--quick", action="store_true", help="tiny training runs (smoke tests)")
    args = parser.parse_args(argv)
    try:
        build = builders(args.families)
    except MissingFamilyPart as err:
        raise SystemExit(str(err)) from None
    logging.basicConfig(level=logging.WARNING)
    with one_line_per_warning_kind() as kinds:
        start = time.perf_counter()
        bar = tqdm(args.families, desc="families", unit="family")
        for family in bar:
            bar.set_description(f"families ({family}: train + export)")
            written = build[family](args.artifacts, args.out, args.quick)
            tqdm.write(f"{family}: wrote {written} ({time.perf_counter() - start:.0f} s so far)")
    repeats = f"; {kinds.suppressed} repeated warnings not shown" if kinds.suppressed else ""
    print(f"model repository {args.out} ready in {time.perf_counter() - start:.0f} s{repeats}")


if __name__ == "__main__":
    main()
