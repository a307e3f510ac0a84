"""`python -m exporters.build`: trains (when no checkpoint exists) and exports the default
models of every family into a Triton-layout model repository."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from tqdm import tqdm

from exporters.audio import build_audio
from exporters.ctr import export_din
from exporters.repository import set_default_alias
from exporters.segmentation import build_segmentation
from exporters.splitcompute import build_splitcompute
from models.console import one_line_per_warning_kind


def build_ctr(artifacts: Path, repository: Path, quick: bool) -> Path:
    checkpoint = artifacts / "ctr" / "din_dice.pt"
    if not checkpoint.is_file():
        from models.ctr import train  # torch training only when needed

        train.main(["--out", str(checkpoint.parent), *(["--quick"] if quick else [])])
    written = export_din(checkpoint, repository, "din-fp32")
    set_default_alias(repository, "din", "din-fp32", overwrite=False)
    return written


FAMILIES = {"ctr": build_ctr, "splitcompute": build_splitcompute, "segmentation": build_segmentation,
            "audio": build_audio}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m exporters.build", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("model_repository"), help="model repository")
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="training checkpoints")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--quick", action="store_true", help="tiny training runs (smoke tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    kinds = one_line_per_warning_kind()
    start = time.perf_counter()
    bar = tqdm(args.families, desc="families", unit="family")
    for family in bar:
        bar.set_description(f"families ({family}: train + export)")
        written = FAMILIES[family](args.artifacts, args.out, args.quick)
        tqdm.write(f"{family}: wrote {written} ({time.perf_counter() - start:.0f} s so far)")
    repeats = f"; {kinds.suppressed} repeated warnings not shown" if kinds.suppressed else ""
    print(f"model repository {args.out} ready in {time.perf_counter() - start:.0f} s{repeats}")


if __name__ == "__main__":
    main()
