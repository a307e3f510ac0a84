"""Fine-tuning an audio embedder, the bag of words (models/audio/bow.py) or PaSST (models/audio/passt.py), on a
user's train split, for `python -m models.audio.user_data ... --fine-tune EPOCHS [--fine-tune-embedder E]`
(issue 24).

Start: the shipped embedder, its weights read back from its ONNX graph (`read_back`: parameters and buffers keep
their names in the graph; a Linear layer's weight becomes an unnamed (in, out) MatMul constant, taken in the
graph's node order, which follows the layers' order; the training heads and the bag of words' decoder are not
exported and not needed) and checked against the graph on the user's own windows. When the repository has no
graph that reads back (another architecture, a missing meta.json), the embedder starts from scratch: the bag of
words with models/audio/train.py's unsupervised recipe on the user's fit clips (patch autoencoder, k-means
codebooks, idf), PaSST from a random initialisation; the report says so.

Training: every 1 s scene window of a fit clip (the service's windows, infersuite/services/audio/windows.py)
labelled with its clip's label; cross-entropy of a head (the user's classes) on the window's embedding (a
multilabel task: the clip's row of 0/1 labels, binary cross-entropy per label). The
head is first trained alone on the frozen embeddings (HEAD_EPOCHS; linear probing then fine-tuning, Kumar et
al., ICLR 2022: a random head's gradients distort the features first), then everything at a low rate.
- The bag of words: its own MLP head (BowConfig.head_hidden). The hard word assignment has no gradient, so a
  straight-through estimator trains the encoder and the codebooks: the forward value is the exported hard
  histogram, the backward pass is that of a softmax assignment over the codebook distances (temperature: their
  mean). The idf weights stay fixed.
- PaSST: a linear head on the scene embedding ([class token, mean patch token]); every weight but the fixed
  log-mel front end is trained, with patchout on in training as in the paper (structured rows and columns,
  unstructured patches: PasstConfig), every patch seen at evaluation.

Selection: after every epoch (and before the first, epoch 0: the start itself) a linear probe fits the fit
clips' scene embeddings and is scored on the validation clips (accuracy; multilabel: the per-label probes'
mAP), a part of the train split; the best epoch
(the earliest on a tie) is kept. Test clips are never read here.

Export: `export` writes the chosen embedder as a checkpoint in models/audio/train.py's layout and exports it
through exporters/audio.py (`export_embedder`: ONNX, parity check, meta.json) as audio-bow-fp32 or
audio-passt-fp32 of an output repository.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from infersuite.services.audio.windows import (
    centre_sample,
    centred_windows,
    scene_windows,
    timestamp_count,
    timestamps_ms,
)
from models.audio.bow import BagOfWords, BowConfig
from models.audio.frontend import FrontEndConfig, LogMel, WaveformEmbedder
from models.audio.metrics import linear_probe_accuracy
from models.audio.passt import Passt
from models.audio.train import TrainConfig, _fit_codebooks, _train_autoencoder

ARCHITECTURES = {"bow": "the bag of words", "passt": "PaSST"}  # meta.json's architecture -> its name here
GRAPHS = {"bow": "bag-of-words", "passt": "PaSST"}  # the same, before "graph"
READ_BACK_ATOL = 1e-4  # torch vs ONNX embeddings of the read-back weights (exporters/audio.py's parity tolerance)
SOFT_EPSILON = 1e-4  # inside the square root of the soft histogram: its gradient at 0 is finite
LEARNING_RATE = 1e-4  # AdamW, encoder + codebooks + head (1e-3 undid the shipped features within 2 epochs)
BATCH = 32  # windows per step
HEAD_EPOCHS = 50  # passes of the head alone over the frozen fit windows before fine-tuning
HEAD_LEARNING_RATE = 3e-3  # AdamW, models/audio/train.py's head rate


class Windows:
    """The scene windows of every clip, their log-mel computed once: `mels` (W, 1, M, T), `owner` (W,) clip index."""

    def __init__(self, audio: list[np.ndarray], front: FrontEndConfig, batch: int = 256) -> None:
        per_clip = [scene_windows(a, front.window_samples) for a in audio]
        self.waveforms = np.concatenate(per_clip)
        self.owner = np.concatenate([np.full(len(w), i) for i, w in enumerate(per_clip)])
        self.clips = len(audio)
        log_mel = LogMel(front)
        with torch.no_grad():
            self.mels = torch.cat([log_mel.fft(torch.from_numpy(self.waveforms[i:i + batch]))
                                   for i in range(0, len(self.waveforms), batch)])

    def of(self, clips: list[int]) -> np.ndarray:
        """Indices of the windows of `clips`."""
        return np.flatnonzero(np.isin(self.owner, clips))


class Frames:
    """The timestamp windows of every clip, cut when asked: HEAR's timestamp embedding of `hop_ms` steps, each a
    model window centred on its timestamp holding audio only in its central `window_ms`
    (infersuite/services/audio/windows.py, as hear_infersuite's get_timestamp_embeddings cuts them)."""

    def __init__(self, audio: list[np.ndarray], front: FrontEndConfig, hop_ms: float, window_ms: float) -> None:
        self.audio, self.front = audio, front
        rate = front.sample_rate
        self.stamps = [timestamps_ms(timestamp_count(len(a), rate, hop_ms), hop_ms) for a in audio]
        self.centres = [centre_sample(s, rate) for s in self.stamps]
        self.active = round(window_ms * rate / 1000)
        self.log_mel = LogMel(front)

    def waveforms(self, pairs: np.ndarray) -> np.ndarray:
        """(n, 2) of (clip, frame) -> (n, window samples) float32."""
        return np.concatenate([centred_windows(self.audio[c], 0, self.centres[c][f:f + 1], self.front.window_samples,
                                               self.active) for c, f in pairs.tolist()]).astype(np.float32)

    @torch.no_grad()
    def mels(self, pairs: np.ndarray) -> torch.Tensor:
        return self.log_mel.fft(torch.from_numpy(self.waveforms(pairs)))

    @torch.no_grad()
    def embeddings(self, model: WaveformEmbedder, clip: int, batch: int = 256) -> np.ndarray:
        """(T, D): the clip's timestamp embeddings (the exported graph's, from the torch model)."""
        model.eval()
        centres = self.centres[clip]
        return np.concatenate([model.embed(self.log_mel.fft(torch.from_numpy(
            centred_windows(self.audio[clip], 0, centres[i:i + batch], self.front.window_samples, self.active)
            .astype(np.float32)))).numpy() for i in range(0, len(centres), batch)])


@torch.no_grad()
def scene_embeddings(model: WaveformEmbedder, windows: Windows, batch: int = 256) -> np.ndarray:
    """(clips, D): the mean of each clip's window embeddings (the exported graph's scene embedding)."""
    model.eval()
    per_window = torch.cat([model.embed(windows.mels[i:i + batch]) for i in range(0, len(windows.mels), batch)])
    sums = np.zeros((windows.clips, per_window.shape[1]))
    np.add.at(sums, windows.owner, per_window.numpy())
    return sums / np.bincount(windows.owner, minlength=windows.clips)[:, None]


def straight_through_embed(model: BagOfWords, mel: torch.Tensor) -> torch.Tensor:
    """(B, 1, M, T) -> (B, D): the value of `model.embed` (hard histograms), the gradient of soft ones."""
    codes = model.codes(mel)
    per_band = codes.reshape(codes.shape[0], model.config.bands, -1, codes.shape[-1])  # (B, bands, P, L)
    hard, soft = [], []
    for centroids in model.codebooks():
        distance = (per_band.unsqueeze(-2) - centroids).pow(2).sum(-1)  # (B, bands, P, K)
        words = (distance <= distance.amin(-1, keepdim=True)).float()
        hard.append(words.sum(2) / words.sum((2, 3)).unsqueeze(-1))
        soft.append(torch.softmax(-distance / distance.detach().mean().clamp(min=1e-12), dim=-1).mean(2))
    hard_embedding = torch.cat(hard, -1).flatten(1).sqrt() * model.idf
    soft_embedding = (torch.cat(soft, -1).flatten(1) + SOFT_EPSILON).sqrt() * model.idf
    return hard_embedding.detach() + soft_embedding - soft_embedding.detach()


def _meta(model_dir: Path) -> dict[str, Any]:
    """The meta.json of a repository model's newest version ({} when it has none)."""
    meta_path = next(iter(sorted(model_dir.glob("[0-9]*/meta.json"), key=lambda p: int(p.parent.name))[-1:]), None)
    return json.loads(meta_path.read_text()) if meta_path is not None else {}


def shipped_config(model_dir: Path) -> tuple[BowConfig, FrontEndConfig, dict[str, Any]]:
    """The bag of words' config, front end and meta.json of a repository model (defaults when it has none)."""
    meta = _meta(model_dir)
    config = meta.get("model_config", {})
    if meta.get("architecture") != "bow" or "bow" not in config:
        return BowConfig(), FrontEndConfig(), meta
    model = BagOfWords.from_config(config)
    return model.config, model.front_config, meta


def shipped_model(model_dir: Path, architecture: str, classes: int) -> WaveformEmbedder:
    """A fresh embedder of the repository model's architecture and config (the defaults when its meta.json has
    none), with a head of `classes`."""
    meta = _meta(model_dir)
    config = meta.get("model_config", {}) if meta.get("architecture") == architecture else {}
    if architecture == "bow":
        bow = BagOfWords.from_config(config) if "bow" in config else BagOfWords()
        return BagOfWords(replace(bow.config, n_classes=classes), bow.front_config)
    passt = Passt.from_config(config) if "passt" in config else Passt()
    return Passt(replace(passt.config, n_classes=classes), passt.front_config)


def _linear_weights(graph: onnx.GraphProto, initializers: dict[str, np.ndarray], named: set[str]) -> list[np.ndarray]:
    """The unnamed (in, out) constants that MatMul nodes multiply by, in node order: the Linear layers' weights."""
    return [initializers[node.input[1]] for node in graph.node
            if node.op_type == "MatMul" and node.input[1] in initializers and node.input[1] not in named]


def read_back(model_dir: Path, classes: int, check: np.ndarray,
              architecture: str = "bow") -> tuple[WaveformEmbedder | None, str]:
    """The shipped embedder as a torch model with a fresh head of `classes`, from its ONNX graph, checked on
    the `check` windows (N, window) against the graph; (None, why) when it does not read back."""
    meta = _meta(model_dir)
    if meta.get("architecture") != architecture:
        return None, f"{model_dir} holds no {GRAPHS[architecture]} graph with its meta.json"
    onnx_path = sorted(model_dir.glob("[0-9]*/model.onnx"), key=lambda p: int(p.parent.name))[-1]
    graph = onnx.load(str(onnx_path)).graph
    initializers = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    model = shipped_model(model_dir, architecture, classes)
    state = model.state_dict()
    for name, value in initializers.items():  # parameters and buffers under their own names
        if name in state and value.shape == tuple(state[name].shape):
            state[name] = torch.from_numpy(value.copy())
    # The Linear layers the graph runs, in the order the model registers them (the heads and the bag of words'
    # decoder come after those the embedding uses, and are not in the graph).
    named = {*state, *(name for name, _ in model.named_buffers())}  # non-persistent buffers keep names too
    constants = _linear_weights(graph, initializers, named)
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)][:len(constants)]
    for name, value in zip(linears, constants, strict=True):
        if value.T.shape != tuple(state[f"{name}.weight"].shape):
            return None, f"{onnx_path}: a MatMul constant of shape {value.shape} where {name} needs its transpose"
        state[f"{name}.weight"] = torch.from_numpy(value.T.copy())
    model.load_state_dict(state)
    model.eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        difference = float(np.abs(model(torch.from_numpy(check)).numpy()
                                  - session.run(["embedding"], {"waveform": check})[0]).max())
    if not difference <= READ_BACK_ATOL:  # NaN included
        return None, f"{onnx_path}: the read-back weights differ from the graph by {difference:.2g}"
    return model, (f"the shipped {model_dir.name} (weights read back from {onnx_path.name}; torch and ONNX agree to "
                   f"{difference:.1g} on {len(check)} of your windows)")


def from_scratch(config: BowConfig, front: FrontEndConfig, classes: int, mels: torch.Tensor,
                 seed: int) -> BagOfWords:
    """models/audio/train.py's unsupervised bag of words (autoencoder, codebooks, idf) on `mels` (fit windows)."""
    torch.manual_seed(seed)
    model = BagOfWords(replace(config, n_classes=classes), front)
    train_config = TrainConfig(seed=seed)
    _train_autoencoder(model, mels, train_config, torch.Generator().manual_seed(seed))
    _fit_codebooks(model, mels, train_config)
    model.fit_idf(mels)
    return model.eval()


@dataclass
class Tuning:
    """What fine-tuning trains for one embedder: the head on its window embeddings, the parameters trained
    after the head alone, and the training forward pass (B, 1, M, T) -> (B, D)."""

    model: WaveformEmbedder
    head: nn.Module
    trained: list[torch.Tensor]
    embed: Callable[[torch.Tensor], torch.Tensor]

    @classmethod
    def of(cls, model: WaveformEmbedder, classes: int) -> Tuning:
        if isinstance(model, BagOfWords):
            # the straight-through histograms train the encoder and the codebooks (requires_grad set by fine_tune)
            return cls(model, model.head, [*model.autoencoder.encoder.parameters(), *model.codebooks(),
                                           *model.head.parameters()],
                       lambda mel: straight_through_embed(model, mel))
        assert isinstance(model, Passt)
        head = nn.Linear(model.embedding_size, classes)
        trained = [p for name, p in model.named_parameters() if not name.startswith("head.")]
        return cls(model, head, [*trained, *head.parameters()], model.embed)


@dataclass
class Examples:
    """What fine-tuning trains on: `count` windows, `mels(indices)` their log-mels (B, 1, M, T) and `targets`
    (count,) class indices or (count, labels) of 0/1."""

    count: int
    mels: Callable[[torch.Tensor], torch.Tensor]
    targets: torch.Tensor


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for class indices (multiclass), per-label binary cross-entropy for 0/1 rows (multilabel)."""
    if targets.ndim == 2:
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.cross_entropy(logits, targets)


def train_head(tuning: Tuning, examples: Examples, epochs: int, generator: torch.Generator) -> float | None:
    """The head alone on the frozen embeddings of the examples (linear probing before fine-tuning: a random
    head's gradients would first distort the features); its last epoch's mean loss."""
    tuning.model.eval()
    with torch.no_grad():
        embedded = torch.cat([tuning.model.embed(examples.mels(part))
                              for part in torch.arange(examples.count).split(256)])
    optimizer = torch.optim.AdamW(tuning.head.parameters(), lr=HEAD_LEARNING_RATE)
    losses: list[float] = []
    for _ in range(epochs):
        losses = []
        for batch in torch.randperm(len(embedded), generator=generator).split(BATCH):
            loss = _loss(tuning.head(embedded[batch]), examples.targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    return round(float(np.mean(losses)), 4) if losses else None


Scorer = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float]  # (fit x, fit y, validation x, y)


def scene_examples(windows: Windows, y: np.ndarray, clips: list[int]) -> Examples:
    """Every scene window of `clips`, labelled with its clip's label (class index, or 0/1 row)."""
    chosen = torch.from_numpy(windows.of(clips))
    targets = torch.from_numpy(y[windows.owner])[chosen]
    return Examples(len(chosen), partial(_indexed, windows.mels, chosen),
                    targets.float() if y.ndim == 2 else targets.long())


def frame_examples(frames: Frames, targets: list[np.ndarray], clips: list[int], stride: int) -> Examples:
    """Every `stride`-th timestamp window of `clips`, labelled with its frame's 0/1 targets."""
    pairs = np.array([(c, f) for c in clips for f in range(0, len(frames.stamps[c]), stride)])
    return Examples(len(pairs), partial(_frame_mels, frames, pairs),
                    torch.from_numpy(np.stack([targets[c][f] for c, f in pairs])).float())


def _indexed(mels: torch.Tensor, chosen: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    return mels[chosen[batch]]


def _frame_mels(frames: Frames, pairs: np.ndarray, batch: torch.Tensor) -> torch.Tensor:
    return frames.mels(pairs[batch.numpy()])


def fine_tune(model: WaveformEmbedder, windows: Windows, y: np.ndarray, fit: list[int], validation: list[int],
              epochs: int, seed: int, progress: bool = True, learning_rate: float = LEARNING_RATE,
              head_epochs: int = HEAD_EPOCHS, scorer: Scorer = linear_probe_accuracy
              ) -> tuple[WaveformEmbedder, dict[str, Any]]:
    """A scene task: every scene window of the fit clips, labelled with its clip's label; the epoch whose scene
    embeddings `scorer` (a probe fitted on the fit clips, scored on the validation clips: accuracy, or mAP for a
    multilabel task) rates best is kept (epoch 0: the start). `y`: (clips,) class indices -> cross-entropy;
    (clips, labels) of 0/1 -> per-label binary cross-entropy."""
    multilabel = y.ndim == 2
    examples = scene_examples(windows, y, fit)

    def score(tuned: WaveformEmbedder) -> float:
        embedded = scene_embeddings(tuned, windows)
        return scorer(embedded[fit], y[fit], embedded[validation], y[validation])

    model, run = fine_tune_examples(model, examples, y.shape[1] if multilabel else int(y.max()) + 1, score, epochs,
                                    seed, progress, learning_rate, head_epochs)
    return model, {**run, "validation_metric": "mAP" if multilabel else "accuracy"}


def fine_tune_examples(model: WaveformEmbedder, examples: Examples, classes: int,
                       score: Callable[[WaveformEmbedder], float] | None, epochs: int, seed: int,
                       progress: bool = True, learning_rate: float = LEARNING_RATE, head_epochs: int = HEAD_EPOCHS
                       ) -> tuple[WaveformEmbedder, dict[str, Any]]:
    """The loop: the head alone first, then everything for `epochs` passes over `examples`; `score(model)` (on
    data the examples do not hold) after each epoch and before the first; the best epoch's weights are kept
    (the earliest on a tie: epoch 0, the start, unless an epoch beats it). `score` None: nothing is held out to
    choose with (a final fit on every clip, its epochs chosen before): the last epoch is kept."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    tuning = Tuning.of(model, classes)
    codebooks = model.codebooks() if isinstance(model, BagOfWords) else []
    for codebook in codebooks:
        codebook.requires_grad_(True)
    optimizer = torch.optim.AdamW(tuning.trained, lr=learning_rate)

    def validation_score() -> float | None:
        if score is None:
            return None
        model.eval()
        return round(score(model), 6)

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    started = time.perf_counter()
    head_loss = train_head(tuning, examples, head_epochs, generator)
    history: list[dict[str, Any]] = [{"epoch": 0, "head_loss": head_loss, "validation_score": validation_score()}]
    best, best_state = history[0], snapshot()
    name = ARCHITECTURES["bow" if isinstance(model, BagOfWords) else "passt"]
    try:
        for epoch in tqdm(range(1, epochs + 1), desc=f"fine-tune {name}", disable=not progress, leave=False):
            model.train()  # PaSST: patchout on
            losses = []
            for batch in torch.randperm(examples.count, generator=generator).split(BATCH):
                loss = _loss(tuning.head(tuning.embed(examples.mels(batch))), examples.targets[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            history.append({"epoch": epoch, "train_loss": round(float(np.mean(losses)), 4),
                            "validation_score": validation_score()})
            if score is None or history[-1]["validation_score"] > best["validation_score"]:
                best, best_state = history[-1], snapshot()
    except KeyboardInterrupt:  # Ctrl-C: keep the best epoch so far and go on to the report
        history.append({"interrupted_after_epoch": history[-1]["epoch"]})
    for codebook in codebooks:
        codebook.requires_grad_(False)
    model.load_state_dict(best_state)
    return model.eval(), {"chosen_epoch": best["epoch"], "learning_rate": learning_rate, "history": history,
                          "train_seconds": round(time.perf_counter() - started, 1)}


def save_checkpoint(path: Path, model: WaveformEmbedder, metrics: dict[str, Any], source: str) -> Path:
    """models/audio/train.py's checkpoint layout (loadable by its load_checkpoint); `source`: the user's data."""
    assert isinstance(model, BagOfWords | Passt)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": type(model).__name__, "config": model.to_config(), "state_dict": model.state_dict(),
                "metrics": metrics, "data_config": {"user_data": source}}, path)
    return path


def export(checkpoint: Path, repository: Path, name: str = "audio-bow-fp32") -> Path:
    """ONNX export with the parity check, into <repository>/<name>/1/ (exporters/audio.py)."""
    from exporters.audio import export_embedder  # the exporter (onnxscript) only when exporting

    return export_embedder(checkpoint, repository, name)
