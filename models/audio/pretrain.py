"""PaSST pretrained on the audio corpus's "pretrain" clips (issue 25 step 2, a first run), then scored on
the corpus's held-out tasks beside the shipped embedders and log-mel statistics.

    python -m models.audio.pretrain --corpus artifacts/audio-corpus --out artifacts/audio-pretrain \
        [--epochs N] [--seed S]

Objective: multi-task classification over the labels the manifest gives. One linear head per label on
the pooled embedding ([class token, mean patch token], what a caller gets); a clip's loss is the sum of
the cross-entropies of the heads its labels fill (every clip: its source; speech: word and voice; notes:
GM family, pitch class, octave; events: the coarse kind, where that kind occurs at least twice). Only
clips whose manifest split is "pretrain" are read: the held-out voices, words, instruments and packages
that the evaluation probes train and test on are never seen. The PaSST architecture is the shipped one
(`models.audio.passt`, same default config): patch embedding, frequency and time positional encodings,
Patchout in training. Every clip gives one 1 s window (clips longer than a second: their first second;
shorter: zero padded), its log-mel computed once.

Evaluation: `models.audio.corpus.evaluate`'s protocol and functions (each clip embedded once, linear probe with
its shuffled control, hear-eval-kit's MLP probe on MLP_EMBEDDERS, bootstrap intervals, per-clip correctness),
the pretrained PaSST embedded in torch with the service's scene
windows (`infersuite.services.audio.windows`, the same windows as the exported graph; torch and the ONNX graph agree
to 1e-4, exporters/audio.py), plus the same PaSST untrained as a control. Writes pretrain.pt (loadable by
`models.audio.train.load_checkpoint`, exportable by `exporters.audio.export_embedder`), quality.md, quality.json.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from infersuite.services.audio.windows import scene_windows
from models.audio.corpus import evaluate as corpus_eval
from models.audio.corpus.builder import MANIFEST
from models.audio.frontend import FrontEndConfig, LogMel, WaveformEmbedder
from models.audio.passt import Passt, PasstConfig
from models.audio.user_data import BASELINE, load_audio

PRETRAIN_SPLIT = "pretrain"
MISSING = -1  # target of a head a clip has no label for (ignored by the loss)
# head -> (the source whose clips carry it, or None for every clip; the label field)
HEADS: dict[str, tuple[str | None, str]] = {
    "source": (None, "source"),
    "word": ("speech", "word"),
    "voice": ("speech", "voice"),
    "family": ("notes", "family"),
    "pitch_class": ("notes", "pitch_class"),
    "octave": ("notes", "octave"),
    "event_kind": ("events", "kind"),
}
MIN_CLIPS_PER_CLASS = 2  # a value seen once (many event kinds) teaches a head nothing: left unlabelled
PRETRAINED, UNTRAINED = "PaSST pretrained on the corpus", "PaSST untrained (same config, same seed)"
# The MLP probe (a grid of trainings per task and embedder) runs on what the seeds are compared with; the shipped
# embedders get the linear probe only (`python -m models.audio.corpus evaluate` gives them both).
MLP_EMBEDDERS = (PRETRAINED, UNTRAINED, BASELINE)


@dataclass(frozen=True)
class PretrainConfig:
    epochs: int = 40  # passes over the pretrain clips (~12 s each on 2 cores)
    batch_size: int = 64  # windows per step
    lr: float = 2e-3  # AdamW peak learning rate (one-cycle)
    weight_decay: float = 0.05
    seed: int = 0


def pretrain_records(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's clips that pretraining may read; held-out ones never pass."""
    return [record for record in manifest["clips"] if record["split"] == PRETRAIN_SPLIT]


def _label(record: dict[str, Any], head: str) -> str | None:
    source, field = HEADS[head]
    if source is not None and record["source"] != source:
        return None
    value = record["source"] if field == "source" else record["labels"].get(field)
    return None if value is None else str(value)


def build_vocabularies(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """head -> its classes, sorted: the values at least MIN_CLIPS_PER_CLASS clips carry (none when fewer
    than two: the head is then left out)."""
    vocabularies = {}
    for head in HEADS:
        counts = Counter(label for r in records if (label := _label(r, head)) is not None)
        classes = sorted(v for v, n in counts.items() if n >= MIN_CLIPS_PER_CLASS)
        vocabularies[head] = classes if len(classes) > 1 else []  # one class: nothing to tell apart
    return vocabularies


def encode_targets(records: list[dict[str, Any]], vocabularies: dict[str, list[str]]) -> torch.Tensor:
    """(N, heads) class indices in HEADS order, MISSING where a clip does not carry the head's label."""
    index = {head: {v: i for i, v in enumerate(values)} for head, values in vocabularies.items()}
    rows = [[index[head].get(_label(r, head) or "", MISSING) for head in vocabularies] for r in records]
    return torch.tensor(rows, dtype=torch.long)


class MultiTaskHeads(nn.Module):
    """One linear classifier per label on the pooled embedding (B, D) -> {head: (B, classes)}."""

    def __init__(self, embedding_size: int, vocabularies: dict[str, list[str]]):
        super().__init__()
        self.heads = nn.ModuleDict({h: nn.Linear(embedding_size, len(v)) for h, v in vocabularies.items() if v})

    def forward(self, embedding: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(embedding) for name, head in self.heads.items()}


def multitask_loss(logits: dict[str, torch.Tensor], targets: torch.Tensor,
                   head_order: list[str]) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over heads of the mean cross-entropy over the clips that carry the head's label: a clip adds
    to every head it has a label for. Heads no clip of the batch carries are skipped."""
    total, parts = torch.zeros(()), {}
    for column, head in enumerate(head_order):
        labelled = targets[:, column] != MISSING
        if head not in logits or not bool(labelled.any()):
            continue
        loss = F.cross_entropy(logits[head][labelled], targets[labelled, column])
        total, parts[head] = total + loss, float(loss.detach())
    return total, parts


def first_windows(audio: list[np.ndarray], window: int) -> np.ndarray:
    """(N, window) float32: each clip's first window, zero padded when shorter."""
    return np.stack([scene_windows(a[:window], window)[0] for a in audio])


@torch.no_grad()
def window_mels(windows: np.ndarray, front: FrontEndConfig, batch: int = 256) -> torch.Tensor:
    """(N, window) -> (N, 1, M, T) log-mel, the model's own front end."""
    log_mel = LogMel(front)
    return torch.cat([log_mel(torch.from_numpy(windows[i:i + batch])) for i in range(0, len(windows), batch)])


def train_step(model: Passt, heads: MultiTaskHeads, optimizer: torch.optim.Optimizer, mels: torch.Tensor,
               targets: torch.Tensor, head_order: list[str]) -> tuple[float, dict[str, float]]:
    model.train()
    heads.train()
    loss, parts = multitask_loss(heads(model.embed(mels)), targets, head_order)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach()), parts


def pretrain(mels: torch.Tensor, targets: torch.Tensor, vocabularies: dict[str, list[str]], config: PretrainConfig,
             model_config: PasstConfig | None = None, log: Callable[[str], None] = print
             ) -> tuple[Passt, MultiTaskHeads, dict[str, Any]]:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = Passt(model_config or PasstConfig())
    heads = MultiTaskHeads(model.embedding_size, vocabularies)
    parameters = [*model.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(mels) // config.batch_size)
    total, warmup = config.epochs * steps_per_epoch, max(1, config.epochs * steps_per_epoch // 10)
    # linear warm-up over a tenth of the steps, then cosine decay to 0 (defined for any step count)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / total)))
    head_order, history = list(vocabularies), []
    started = time.perf_counter()
    for epoch in range(config.epochs):
        epoch_started, losses = time.perf_counter(), []
        sums: Counter[str] = Counter()
        for batch in torch.randperm(len(mels), generator=generator).split(config.batch_size):
            loss, parts = train_step(model, heads, optimizer, mels[batch], targets[batch], head_order)
            schedule.step()
            losses.append(loss)
            sums.update(parts)
        history.append({"epoch": epoch + 1, "mean_loss": round(float(np.mean(losses)), 4),
                        "head_losses": {h: round(v / len(losses), 4) for h, v in sums.items()},
                        "seconds": round(time.perf_counter() - epoch_started, 1)})
        log(json.dumps(history[-1]))
    metrics = {"train_seconds": round(time.perf_counter() - started, 1), "history": history,
               "clips": len(mels), "steps": total}
    return model.eval(), heads.eval(), metrics


def torch_scene_embedder(model: WaveformEmbedder, batch: int = 256) -> Callable[[np.ndarray], np.ndarray]:
    """(n, samples) clips of one length -> (n, D): the mean embedding of the service's scene windows."""
    window = model.front_config.window_samples

    @torch.no_grad()
    def embed(clips: np.ndarray) -> np.ndarray:
        windows = np.concatenate([scene_windows(c, window) for c in clips])  # (n * W, window)
        out = torch.cat([model(torch.from_numpy(windows[i:i + batch])) for i in range(0, len(windows), batch)])
        return out.reshape(len(clips), -1, out.shape[-1]).mean(1).numpy()

    return embed


def evaluate_models(corpus: Path, repository: Path, models: dict[str, Passt], seed: int = 0,
                    validation: bool = False, probes: tuple[str, ...] = corpus_eval.PROBES) -> dict[str, Any]:
    """corpus.evaluate with the torch models' scene embeddings as extra embedders, the first model's paired
    differences against every other embedder (on the validation split of the train clips with `validation`),
    per probe, with the per-clip correctness that pairs seeds clip by clip."""
    extra = {title: torch_scene_embedder(model.eval()) for title, model in models.items()}
    return corpus_eval.evaluate(corpus, repository, seed, extra=extra, reference=next(iter(models)),
                                validation=validation, probes=probes, mlp_titles=MLP_EMBEDDERS)


def save(path: Path, model: Passt, heads: MultiTaskHeads, vocabularies: dict[str, list[str]],
         metrics: dict[str, Any]) -> Path:
    """The layout of models.audio.train's checkpoints (kind, config, state_dict, metrics) plus the heads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": "Passt", "config": model.to_config(), "state_dict": model.state_dict(),
                "metrics": metrics, "heads": heads.state_dict(), "vocabularies": vocabularies}, path)
    return path


def load(path: Path) -> tuple[Passt, dict[str, Any]]:
    """(the pretrained PaSST in eval mode, its pretraining metrics) from a `save`d checkpoint."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model = Passt.from_config(checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint["metrics"]


def render(result: dict[str, Any], metrics: dict[str, Any], command: str, seconds: float) -> str:
    history = metrics["history"]
    intro = [
        "# PaSST pretrained on the audio corpus, on its held-out tasks (issue 25 step 2, first run)", "",
        f"Produced by `{command}` ({seconds:.0f} s wall, of which pretraining {metrics['train_seconds']:.0f} s "
        f"on {metrics['threads']} CPU threads: {metrics['clips']} pretrain clips x {len(history)} epochs, "
        f"{metrics['steps']} steps, {history[-1]['seconds']:.0f} s for the last epoch). Loss per epoch "
        f"(sum over heads): {', '.join(str(h['mean_loss']) for h in history)}; last epoch per head: "
        f"{', '.join(f'{k} {v}' for k, v in history[-1]['head_losses'].items())}.", "",
        f"Config: {json.dumps(metrics['pretrain_config'])}; PaSST {json.dumps(metrics['passt_config'])}.", ""]
    table = corpus_eval.render(result, command, seconds).split("\n")
    body = [line for line in table[2:] if not line.startswith("Produced by")]
    differences = [
        "", "Paired differences (accuracy of the first minus the second, the same probe protocol; interval: "
        "paired bootstrap 95% over the same test clips):", "",
        "| task | probe | difference | accuracy difference | 95% interval |", "|---|---|---|---|---|"]
    for name, task in result["tasks"].items():
        for probe, figures in (("linear", task), ("MLP", task.get("mlp", {}))):
            for pair, d in figures.get("differences", {}).items():
                differences.append(f"| {name} | {probe} | {pair} | {d['difference']:+.3f} | "
                                   f"{d['interval_95'][0]:+.3f} to {d['interval_95'][1]:+.3f} |")
    return "\n".join(intro + body + differences) + "\n"


def _pretrain_from_corpus(corpus: Path, out: Path, config: PretrainConfig, max_clips: int | None,
                          threads: int, model_config: PasstConfig) -> tuple[Passt, dict[str, Any]]:
    """Loads the pretrain clips (a seeded subsample of `max_clips`), pretrains, saves out/pretrain.pt."""
    started = time.perf_counter()
    records = pretrain_records(json.loads((corpus / MANIFEST).read_text()))
    if max_clips is not None and max_clips < len(records):
        keep = np.random.default_rng(config.seed).choice(len(records), max_clips, replace=False)
        records = [records[i] for i in sorted(keep.tolist())]
    vocabularies = build_vocabularies(records)
    front = FrontEndConfig()
    audio = [load_audio(corpus / r["file"], front.sample_rate) for r in records]
    mels = window_mels(first_windows(audio, front.window_samples), front)
    print(f"{len(records)} pretrain clips loaded in {time.perf_counter() - started:.0f} s; heads: "
          f"{ {h: len(v) for h, v in vocabularies.items()} }", file=sys.stderr, flush=True)
    model, heads, metrics = pretrain(mels, encode_targets(records, vocabularies), vocabularies, config, model_config,
                                     log=lambda line: print(line, file=sys.stderr, flush=True))
    metrics.update(threads=threads, pretrain_config=asdict(config), passt_config=asdict(model.config),
                   vocabulary_sizes={h: len(v) for h, v in vocabularies.items()})
    save(out / "pretrain.pt", model, heads, vocabularies, metrics)
    return model, metrics


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m models.audio.pretrain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("artifacts/audio-corpus"))
    parser.add_argument("--out", type=Path, default=Path("artifacts/audio-pretrain"))
    parser.add_argument("--repository", type=Path, default=Path("shipped_models"),
                        help="holds the shipped audio-passt-fp32 and audio-bow-fp32 (read only)")
    parser.add_argument("--epochs", type=int, default=PretrainConfig.epochs)
    parser.add_argument("--seed", type=int, default=None,
                        help="pretraining and evaluation seed (default 0; with --checkpoint: the checkpoint's own)")
    parser.add_argument("--max-clips", type=int, default=None, help="a seeded subsample of the pretrain clips")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-eval", action="store_true", help="pretrain only")
    parser.add_argument("--pooling", choices=("mean", "stats"), default=PasstConfig.pooling,
                        help="scene embedding pooling (models.audio.passt.PasstConfig.pooling)")
    parser.add_argument("--validation", action="store_true",
                        help="probe on a validation split of each task's train clips (test clips unread): for choices")
    parser.add_argument("--probes", nargs="+", choices=corpus_eval.PROBES, default=list(corpus_eval.PROBES),
                        help="held-out probes: linear (logistic regression; always run, quality.json's main figures), "
                        "mlp (hear-eval-kit's grid-searched MLP; leave it out for a faster evaluation)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="evaluate this pretrain.pt instead of pretraining (its recorded metrics are reported)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    config = PretrainConfig(epochs=args.epochs, seed=0 if args.seed is None else args.seed)
    if args.checkpoint is not None:
        model, metrics = load(args.checkpoint)
        config = PretrainConfig(**metrics["pretrain_config"])
        if args.seed is not None and args.seed != config.seed:
            raise SystemExit(f"--seed {args.seed} but {args.checkpoint} was pretrained with seed {config.seed}: "
                             "leave --seed out to evaluate with the checkpoint's own")
    else:
        model, metrics = _pretrain_from_corpus(args.corpus, args.out, config, args.max_clips, args.threads,
                                               PasstConfig(pooling=args.pooling))
    if args.no_eval:
        return metrics
    torch.manual_seed(config.seed)
    untrained = Passt(model.config).eval()
    result = evaluate_models(args.corpus, args.repository, {PRETRAINED: model, UNTRAINED: untrained}, config.seed,
                             args.validation, tuple(args.probes))
    result["pretraining"] = metrics
    command = "python -m models.audio.pretrain " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = render(result, metrics, command, time.perf_counter() - started)
    if args.validation:
        text = text.replace("\n\n", "\n\n**Validation split, not the test**: each probe fits on 70% of the groups of a "
                            "task's train clips and is scored on the other 30% (`corpus.evaluate.validation_split`); "
                            "the test clips are not read, and the train / test column reads fit / validation.\n\n", 1)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "validation" if args.validation else "quality"  # quality.json is what exporters/audio_pretrained.py ships
    (args.out / f"{name}.md").write_text(text)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
