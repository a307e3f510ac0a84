"""The bag-of-words embedder fitted on the corpus's pretraining clips (issue 25 step 2: the bag-of-words model
trained on the corpus too, not only PaSST), against the shipped one, fitted on the synthetic world.

The shipped architecture (its meta.json's config: patches, autoencoder, codebooks, bands) is fitted again, per
seed, the way `models.audio.train.train_bow` fits it, on the first 1 s window of every clip the manifest marks
for pretraining (held-out clips never pass): the patch autoencoder on reconstruction, the k-means codebooks on
its codes, the idf over the windows. Nothing learns from labels (the paper's probe head is not part of the
embedding and is not trained here). Then one `models.audio.corpus.evaluate` run scores every seed's model beside
the shipped embedders and log-mel statistics on the held-out tasks (linear probe, the same clips for all), and
per task the corpus-fitted model minus the shipped bag of words and minus log-mel statistics gets a hierarchical
bootstrap over seeds x test clips (`models.statistics.hierarchical_bootstrap`).

    python -m models.audio.pretrain_bow --corpus artifacts/audio-corpus --seeds 0 1 2 \\
        --out artifacts/audio-bow-corpus --report reports/audio_bow_corpus.md      # make report-audio-bow-corpus
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.audio.bow import BagOfWords, BowConfig
from models.audio.corpus import MANIFEST
from models.audio.corpus import evaluate as corpus_eval
from models.audio.frontend import FrontEndConfig
from models.audio.pretrain import first_windows, pretrain_records, torch_scene_embedder, window_mels
from models.audio.train import TrainConfig, _fit_codebooks, _train_autoencoder
from models.audio.user_data import BASELINE, EMBEDDERS, load_audio, write_report
from models.statistics import RULE, hierarchical_bootstrap

SHIPPED_BOW = "bag of words"  # models.audio.user_data.EMBEDDERS' title of the shipped audio-bow-fp32
PASST = "PaSST"


def title(seed: int) -> str:
    return f"bag of words fitted on the corpus (seed {seed})"


def shipped_config(repository: Path) -> BowConfig:
    """The shipped bag of words' architecture (its meta.json), so that only the data it is fitted on differs."""
    meta = json.loads((repository / EMBEDDERS[SHIPPED_BOW] / "1" / "meta.json").read_text())
    return BagOfWords.from_config(meta["model_config"]).config


def corpus_windows(corpus: Path, max_clips: int | None, seed: int) -> torch.Tensor:
    """(N, 1, M, T) log-mel of the first window of each pretraining clip (a seeded subsample of `max_clips`)."""
    records = pretrain_records(json.loads((corpus / MANIFEST).read_text()))
    if max_clips is not None and max_clips < len(records):
        keep = np.random.default_rng(seed).choice(len(records), max_clips, replace=False)
        records = [records[i] for i in sorted(keep.tolist())]
    front = FrontEndConfig()
    audio = [load_audio(corpus / r["file"], front.sample_rate) for r in records]
    return window_mels(first_windows(audio, front.window_samples), front)


def fit(windows: torch.Tensor, config: BowConfig, seed: int) -> tuple[BagOfWords, dict[str, Any]]:
    """The autoencoder, codebooks and idf of `train_bow`, fitted on `windows`; no head."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    train = TrainConfig(seed=seed)
    model = BagOfWords(config)
    reconstruction = _train_autoencoder(model, windows, train, generator)
    _fit_codebooks(model, windows, train)
    model.fit_idf(windows)
    return model.eval(), {"seed": seed, "windows": len(windows), "reconstruction_mse": round(reconstruction, 5),
                          "fit_seconds": round(time.perf_counter() - started, 1),
                          "autoencoder_epochs": train.autoencoder_epochs, "kmeans_codes": train.kmeans_codes}


def compare(result: dict[str, Any], seeds: list[int], other: str) -> dict[str, dict[str, Any]]:
    """Per task, the corpus-fitted bag of words minus `other`: per-seed accuracy differences and the
    hierarchical bootstrap over seeds x test clips of the per-clip differences (linear probe)."""
    out = {}
    for name, task in result["tasks"].items():
        correct = task["correct"]["linear"]
        theirs = corpus_eval.decode_correct(correct[other]).astype(float)
        table = np.stack([corpus_eval.decode_correct(correct[title(s)]).astype(float) - theirs for s in seeds])
        found = hierarchical_bootstrap(table, seed=0)
        out[name] = {"per_seed": [round(float(v), 4) for v in table.mean(1)], "mean": round(found.estimate, 4),
                     "interval_95": [round(found.low, 4), round(found.high, 4)], "verdict": found.verdict}
    return out


def run(corpus: Path, repository: Path, seeds: list[int], out: Path, max_clips: int | None) -> dict[str, Any]:
    config = shipped_config(repository)
    windows = corpus_windows(corpus, max_clips, seeds[0])
    models, fits = {}, []
    for seed in seeds:
        model, figures = fit(windows, config, seed)
        torch.save({"kind": "BagOfWords", "config": model.to_config(), "state_dict": model.state_dict(),
                    "metrics": figures}, out / f"bow-seed{seed}.pt")
        models[title(seed)] = torch_scene_embedder(model)
        fits.append(figures)
        print(f"seed {seed}: fitted on {figures['windows']} windows in {figures['fit_seconds']} s", file=sys.stderr,
              flush=True)
    tasks = [name for name, task in json.loads((corpus / MANIFEST).read_text())["tasks"].items()
             if task["train"] and task["test"]]  # a corpus built from fewer sources has empty tasks
    result = corpus_eval.evaluate(corpus, repository, seed=0, tasks=tasks, extra=models, probes=("linear",))
    return {"bow_config": asdict(config), "fits": fits, "seeds": seeds, "evaluation": result,
            "minus_shipped_bow": compare(result, seeds, SHIPPED_BOW), "minus_log_mel": compare(result, seeds, BASELINE),
            "minus_passt": compare(result, seeds, PASST)}


def render(found: dict[str, Any], command: str, seconds: float) -> str:
    seeds, fits = found["seeds"], found["fits"]
    tasks = found["evaluation"]["tasks"]
    lines = [
        "# The bag of words fitted on the corpus against the shipped one (issue 25)", "",
        f"Produced by `{command}` ({seconds:.0f} s wall). The shipped bag of words' architecture "
        f"({found['bow_config']}) fitted again per seed on the first 1 s window of each of the corpus's "
        f"{fits[0]['windows']:,} pretraining clips (patch autoencoder {fits[0]['autoencoder_epochs']} epochs, "
        f"k-means on {fits[0]['kmeans_codes']:,} codes, idf; no labels), seeds {', '.join(map(str, seeds))}; the "
        "shipped one was fitted the same way on the synthetic world. Linear probe on scene embeddings, trained on "
        "each held-out task's train clips, scored on its test clips (the corpus evaluation's protocol, "
        "reports/audio_corpus.md).", "",
        f"Rule: {RULE}.", "",
        "## Accuracy (linear probe, test clips)", "",
        "| task | log-mel statistics | shipped bag of words | corpus-fitted bag of words, per seed | PaSST |",
        "|---|---|---|---|---|"]
    for name, task in tasks.items():
        accuracy = {t: r["accuracy"] for t, r in task["embedders"].items()}
        lines.append(f"| {name} | {accuracy[BASELINE]:.3f} | {accuracy[SHIPPED_BOW]:.3f} | "
                     + ", ".join(f"{accuracy[title(s)]:.3f}" for s in seeds) + f" | {accuracy[PASST]:.3f} |")
    for key, label in (("minus_shipped_bow", "minus the shipped bag of words"),
                       ("minus_log_mel", "minus log-mel statistics"), ("minus_passt", "minus PaSST")):
        lines += ["", f"## Corpus-fitted bag of words {label} (hierarchical bootstrap, seeds x test clips)", "",
                  "| task | test clips | per seed | mean | 95% interval | verdict |", "|---|---|---|---|---|---|"]
        for name, c in found[key].items():
            lines.append(f"| {name} | {tasks[name]['test']} | {', '.join(f'{v:+.3f}' for v in c['per_seed'])} | "
                         f"{c['mean']:+.3f} | {c['interval_95'][0]:+.3f} to {c['interval_95'][1]:+.3f} | "
                         f"{c['verdict']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m models.audio.pretrain_bow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a folder models.audio.corpus build wrote")
    parser.add_argument("--repository", type=Path, default=Path("shipped_models"),
                        help="holds the shipped audio-bow-fp32 (its architecture) and audio-passt-fp32")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-clips", type=int, default=None, help="fit on a seeded subsample of the pretrain clips")
    parser.add_argument("--out", type=Path, required=True, help="the fitted checkpoints (bow-seed<s>.pt)")
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    found = run(args.corpus, args.repository, args.seeds, args.out, args.max_clips)
    command = "python -m models.audio.pretrain_bow " + shlex.join(argv if argv is not None else sys.argv[1:])
    write_report(args.report, render(found, command, time.perf_counter() - started), found)
    return found


if __name__ == "__main__":
    main()
