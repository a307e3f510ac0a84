"""Quantization quality of an audio embedder that can see a loss: many windows, the embeddings
compared with fp32 directly, and the fp32-trained probe applied to the quantized embeddings.

On held-out synthetic clips (data seed 7, never trained on), cut into 1 s windows (a window is
one scored item, labelled with its clip's class):
- cosine similarity of each window's embedding with its fp32 embedding (mean and worst);
- SQNR: 10 log10(sum fp32^2 / sum (fp32 - quantized)^2) over all windows, in dB;
- a logistic-regression probe trained ONCE on fp32 embeddings of the probe-training windows, then
  applied unchanged to the quantized embeddings of the scored windows: accuracy, agreement with
  its fp32 predictions, log-loss, each accuracy/agreement with a 95% bootstrap interval.
Refitting the probe on each quantized graph (as before) hides what quantization moved.

On real audio (`CorpusBench`, when the audio corpus is built: `make audio-corpus`): the same per task on the
corpus's four held-out scene tasks (words from held-out voices, voices on held-out words, pitch class and
instrument family from held-out instruments), the probe fit on each task's train clips' windows and scored on
its test clips' windows; the figure the gate reads is the mean accuracy over the tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from models.audio.data import AudioDataConfig, make_audio_data

# 100 clips per class, half scored: 500 clips of 2 s = 1,000 scored windows (1,000 to fit the probe)
QUALITY_DATA = replace(AudioDataConfig(seed=7), clips_per_class=100, event_clips=0, test_share=0.5)
WINDOW = 32000


def window_embeddings(path: Path, windows: np.ndarray, batch: int = 64) -> np.ndarray:
    """(N, WINDOW) -> (N, D) through one graph (a plain CPU session)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["embedding"], {"waveform": windows[i:i + batch]})[0]
                           for i in range(0, len(windows), batch)])


def bootstrap_interval(hits: np.ndarray, seed: int = 0, draws: int = 2000) -> tuple[float, float]:
    """95% percentile interval of the mean of `hits` over resampled windows."""
    rng = np.random.default_rng(seed)
    means = hits[rng.integers(0, hits.size, (draws, hits.size))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


@dataclass
class ProbeBench:
    """fp32 embeddings of the probe-training and scored windows, and the probe fit on fp32."""

    probe: Pipeline
    scored_windows: np.ndarray  # (N, WINDOW)
    labels: np.ndarray  # (N,)
    fp32: np.ndarray  # (N, D) fp32 embeddings of the scored windows
    fp32_predictions: np.ndarray  # (N,)

    @classmethod
    def fit(cls, fp32_graph: Path, data_config: AudioDataConfig = QUALITY_DATA) -> ProbeBench:
        data = make_audio_data(data_config)
        per_clip = data.train_audio.shape[1] // WINDOW
        train = data.train_audio[:, :per_clip * WINDOW].reshape(-1, WINDOW)
        scored = data.test_audio[:, :per_clip * WINDOW].reshape(-1, WINDOW)
        return cls.of_windows(fp32_graph, train, np.repeat(data.train_labels, per_clip), scored,
                              np.repeat(data.test_labels, per_clip))

    @classmethod
    def of_windows(cls, fp32_graph: Path, train: np.ndarray, train_labels: np.ndarray, scored: np.ndarray,
                   scored_labels: np.ndarray) -> ProbeBench:
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        probe.fit(window_embeddings(fp32_graph, train), train_labels)
        fp32 = window_embeddings(fp32_graph, scored)
        return cls(probe, scored, scored_labels, fp32, probe.predict(fp32))

    def score(self, graph: Path) -> dict[str, Any]:
        quantized = window_embeddings(graph, self.scored_windows)
        if not np.isfinite(quantized).all():
            return {"windows": len(quantized), "finite": False, "accuracy": 0.0}
        cosine = np.sum(self.fp32 * quantized, 1) / (np.linalg.norm(self.fp32, axis=1)
                                                     * np.linalg.norm(quantized, axis=1) + 1e-12)
        noise = float(np.sum((self.fp32.astype(np.float64) - quantized) ** 2))
        signal = float(np.sum(self.fp32.astype(np.float64) ** 2))
        predictions = self.probe.predict(quantized)
        correct, agree = predictions == self.labels, predictions == self.fp32_predictions
        return {
            "windows": len(quantized), "finite": True,
            "cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min()),
            "sqnr_db": 10 * np.log10(signal / noise) if noise > 0 else float("inf"),
            "accuracy": float(correct.mean()), "accuracy_ci95": bootstrap_interval(correct),
            "agreement": float(agree.mean()), "agreement_ci95": bootstrap_interval(agree),
            "log_loss": float(log_loss(self.labels, self.probe.predict_proba(quantized),
                                       labels=self.probe.classes_)),
        }


CORPUS_TASKS = ("word_unseen_voice", "voice_unseen_word", "pitch_class_unseen_instrument", "family_unseen_instrument")
CORPUS_WINDOWS = 1500  # per task and side, at most (a seeded draw): bounds each recipe's scoring time


def corpus_available(corpus: Path) -> bool:
    return all((corpus / "tasks" / f"{task}.csv").is_file() for task in CORPUS_TASKS)


def task_windows(corpus: Path, task: str, cap: int = CORPUS_WINDOWS, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train windows, labels, scored windows, labels): the task's train and test clips (its own split) cut into
    the service's 1 s scene windows, each labelled with its clip's label; at most `cap` of each, drawn."""
    from infersuite.services.audio.windows import scene_windows
    from models.audio.user_data import prepare_csv

    prepared = prepare_csv(corpus, corpus / "tasks" / f"{task}.csv", 0.25, 0)
    (train, test), = prepared.folds
    audio = prepared.audio(WINDOW)  # 32 kHz: one window = 1 s
    rng = np.random.default_rng(seed)

    def cut(clips: list[int]) -> tuple[np.ndarray, np.ndarray]:
        per_clip = [scene_windows(audio[i], WINDOW) for i in clips]
        windows = np.concatenate(per_clip)
        labels = np.concatenate([np.full(len(w), prepared.y[i]) for i, w in zip(clips, per_clip, strict=True)])
        keep = np.sort(rng.permutation(len(windows))[:cap])
        return windows[keep], labels[keep]

    return (*cut(train), *cut(test))


@dataclass
class CorpusBench:
    """A ProbeBench per held-out corpus task; the gate's figure is their mean accuracy."""

    benches: dict[str, ProbeBench]

    @classmethod
    def fit(cls, fp32_graph: Path, corpus: Path, tasks: tuple[str, ...] = CORPUS_TASKS) -> CorpusBench:
        return cls({task: ProbeBench.of_windows(fp32_graph, *task_windows(corpus, task)) for task in tasks})

    def score(self, graph: Path) -> dict[str, Any]:
        per_task = {task: bench.score(graph) for task, bench in self.benches.items()}
        finite = all(r["finite"] for r in per_task.values())
        tasks = {task: {k: r[k] for k in ("accuracy", "agreement", "sqnr_db", "cosine_min") if k in r}
                 for task, r in per_task.items()}
        if not finite:
            return {"windows": sum(r["windows"] for r in per_task.values()), "finite": False, "accuracy": 0.0,
                    "tasks": tasks}
        return {"windows": sum(r["windows"] for r in per_task.values()), "finite": True,
                "accuracy": float(np.mean([r["accuracy"] for r in per_task.values()])),
                "agreement": float(np.mean([r["agreement"] for r in per_task.values()])),
                "cosine_mean": float(np.mean([r["cosine_mean"] for r in per_task.values()])),
                "cosine_min": float(min(r["cosine_min"] for r in per_task.values())),
                "sqnr_db": float(min(r["sqnr_db"] for r in per_task.values())),  # the worst task's
                "tasks": tasks}
