"""`python -m benchmarks.audio.quant_quality`: every quantization recipe on both audio embedders
of a model repository, scored with exporters/audio_quality.py (1,000 held-out windows: cosine
similarity and SQNR vs fp32, the fp32-trained probe on the quantized embeddings with bootstrap
intervals) -> artifacts/audio/quant_quality.json, rendered into reports/audio.md by
`benchmarks.audio.report`. Speed and sizes are in reports/quantization.md (`make quantize-report`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path
from typing import Any

from exporters.family_quant import AudioQuantization
from exporters.quantize.family import RecipeRefused
from exporters.quantize.recipes import RECIPES

SKIPPED = {"fp16": "a GPU recipe (no gain on the CPU provider)", "int8-qat": "no QAT loop for the audio embedders"}


def measure(repository: Path, embedder: str, work: Path) -> dict[str, Any]:
    family = AudioQuantization(repository, embedder)
    prefix, rows = f"audio-{embedder}", {}
    for recipe, build in RECIPES.items():
        if recipe in SKIPPED:
            rows[recipe] = {"skipped": SKIPPED[recipe]}
            continue
        out = work / f"{prefix}-{recipe}.onnx"
        try:
            with contextlib.chdir(work):
                build(family.graphs()[prefix], out, family, prefix)
        except RecipeRefused as exc:
            rows[recipe] = {"skipped": str(exc)}
            continue
        rows[recipe] = family.quality({prefix: out})
        print(embedder, recipe, rows[recipe], flush=True)
    return rows


def report_lines(artifacts: Path) -> list[str]:
    path = artifacts / "audio" / "quant_quality.json"
    if not path.is_file():
        return [f"(no {path}: run `python -m benchmarks.audio.quant_quality` to measure it)"]
    results = json.loads(path.read_text())
    lines = ["| embedder | recipe | windows | cosine mean (min) | SQNR dB | fp32-probe accuracy [95% CI] | "
             "agreement with fp32 [95% CI] | log-loss |", "|---|---|---|---|---|---|---|---|"]
    for embedder, rows in results.items():
        for recipe, r in rows.items():
            if "skipped" in r:
                lines.append(f"| {embedder} | {recipe} | skipped: {r['skipped']} | | | | | |")
                continue
            accuracy, agreement = r["accuracy_ci95"], r["agreement_ci95"]
            lines.append(f"| {embedder} | {recipe} | {r['windows']} | {r['cosine_mean']:.5f} "
                         f"({r['cosine_min']:.4f}) | {r['sqnr_db']:.1f} | {r['accuracy']:.3f} [{accuracy[0]:.3f}, "
                         f"{accuracy[1]:.3f}] | {r['agreement']:.3f} [{agreement[0]:.3f}, "
                         f"{agreement[1]:.3f}] | {r['log_loss']:.4f} |")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.audio.quant_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = {embedder: measure(args.repository.resolve(), embedder, Path(tmp)) for embedder in ("passt", "bow")}
    out = args.artifacts / "audio" / "quant_quality.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(report_lines(args.artifacts)))
    return results


if __name__ == "__main__":
    main()
