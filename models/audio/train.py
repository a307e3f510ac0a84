"""Train the audio embedders on the synthetic sound set.

    python -m models.audio.train --out artifacts/audio           # PaSST (with and without patchout) + BoW
    python -m models.audio.train --out /tmp/audio --quick        # a smoke run in seconds

Clip spectrograms are computed once with the shared front end (`frontend.LogMel`); a training
window is a random crop at a frame offset, which equals the front end of the cropped waveform
(frames start at multiples of the hop), so the random time shift costs no recomputation.
PaSST is trained twice from the same seed, with and without Patchout, to measure its effect on
epoch time and accuracy; the one with Patchout is exported.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch.nn import functional as F
from tqdm import tqdm

from models.audio.bow import BagOfWords, BowConfig
from models.audio.data import AudioData, AudioDataConfig, make_audio_data
from models.audio.frontend import FrontEndConfig, LogMel
from models.audio.passt import Passt, PasstConfig


@dataclass(frozen=True)
class TrainConfig:
    passt_epochs: int = 40  # passes over the training clips (one random window per clip)
    autoencoder_epochs: int = 6  # BoW autoencoder passes
    head_epochs: int = 80  # BoW MLP head passes (over histograms, cheap)
    batch_size: int = 16  # windows per step
    lr: float = 3e-3  # AdamW peak learning rate (one-cycle)
    kmeans_codes: int = 20000  # latent codes k-means clusters
    seed: int = 0


@torch.no_grad()
def clip_mels(audio: np.ndarray, front: FrontEndConfig, batch: int = 64) -> torch.Tensor:
    """(N, samples) -> (N, 1, M, T_clip) log-mel of whole clips (then cropped into windows)."""
    log_mel = LogMel(replace(front, window_samples=audio.shape[1]))
    return torch.cat([log_mel(torch.from_numpy(audio[i : i + batch])) for i in range(0, len(audio), batch)])


def random_windows(mels: torch.Tensor, frames: int, generator: torch.Generator) -> torch.Tensor:
    """One random window of `frames` per clip: the time shift augmentation."""
    offsets = torch.randint(0, mels.shape[-1] - frames + 1, (mels.shape[0],), generator=generator)
    return torch.stack([m[..., o : o + frames] for m, o in zip(mels, offsets.tolist(), strict=True)])


def tiled_windows(mels: torch.Tensor, front: FrontEndConfig) -> torch.Tensor:
    """(N, 1, M, T_clip) -> (N, W, 1, M, frames): the scene windows the service uses (starts at
    multiples of the window, the last one flush with the clip's end)."""
    hop_frames = front.window_samples // front.hop_length
    last = mels.shape[-1] - front.frames
    starts = sorted({*range(0, last + 1, hop_frames), last})
    return torch.stack([mels[..., s : s + front.frames] for s in starts], dim=1)


def _batches(count: int, size: int, generator: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(count, generator=generator).split(size))


@torch.no_grad()
def passt_correct(model: Passt, mels: torch.Tensor, labels: np.ndarray, batch: int = 256) -> np.ndarray:
    """(N,) bool: each clip classified right (logits averaged over its scene windows)."""
    model.eval()
    windows = tiled_windows(mels, model.front_config)  # (N, W, 1, M, T)
    flat = windows.flatten(0, 1)
    logits = torch.cat([model.classify(flat[i:i + batch]) for i in range(0, len(flat), batch)])
    return logits.reshape(*windows.shape[:2], -1).mean(1).argmax(1).numpy() == labels


def passt_accuracy(model: Passt, mels: torch.Tensor, labels: np.ndarray) -> float:
    return float(passt_correct(model, mels, labels).mean())


def train_passt(
    data: AudioData,
    mels: dict[str, torch.Tensor],
    config: TrainConfig,
    model_config: PasstConfig,
    progress: bool = True,
) -> tuple[Passt, dict[str, Any]]:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = Passt(model_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    steps = config.passt_epochs * -(-len(data.train_labels) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=steps, pct_start=0.15)
    labels, epoch_seconds, epoch_cpu_seconds, history = torch.from_numpy(data.train_labels), [], [], []
    for _ in tqdm(range(config.passt_epochs), desc="passt", disable=not progress, leave=False):
        model.train()
        started, cpu_started = time.perf_counter(), time.process_time()
        windows = random_windows(mels["train"], model.front_config.frames, generator)
        for batch in _batches(len(labels), config.batch_size, generator):
            loss = F.cross_entropy(model.classify(windows[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        epoch_seconds.append(time.perf_counter() - started)
        epoch_cpu_seconds.append(time.process_time() - cpu_started)
        history.append(loss.item())
    metrics = {
        "test_accuracy": passt_accuracy(model, mels["test"], data.test_labels),
        "epoch_seconds": float(np.median(epoch_seconds)),
        # CPU seconds of this process: robust to the other jobs sharing the cores
        "epoch_cpu_seconds": float(np.median(epoch_cpu_seconds)),
        "epochs": config.passt_epochs,
        "last_loss": history[-1],
        "patchout": {k: getattr(model_config, k) for k in ("drop_freq_rows", "drop_time_cols", "drop_patches")},
    }
    return model.eval(), metrics


def _train_autoencoder(
    model: BagOfWords, windows: torch.Tensor, config: TrainConfig, generator: torch.Generator
) -> float:
    patches = model.patches(windows).flatten(0, 2)  # (N * rows * cols, ph * pw)
    optimizer = torch.optim.AdamW(model.autoencoder.parameters(), lr=config.lr)
    loss = torch.zeros(())
    for _ in range(config.autoencoder_epochs):
        for batch in _batches(len(patches), 256, generator):
            loss = F.mse_loss(model.autoencoder(patches[batch]), patches[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return loss.item()


@torch.no_grad()
def _fit_codebooks(model: BagOfWords, windows: torch.Tensor, config: TrainConfig) -> None:
    codes = model.codes(windows).flatten(0, 2).numpy()  # (patches, latent)
    rng = np.random.default_rng(config.seed)
    sample = codes[rng.choice(len(codes), min(config.kmeans_codes, len(codes)), replace=False)]
    for centroids, k in zip(model.codebooks(), model.config.codebooks, strict=True):
        kmeans = KMeans(k, n_init=1, max_iter=100, random_state=config.seed).fit(sample)
        centroids.copy_(torch.from_numpy(kmeans.cluster_centers_).float())


@torch.no_grad()
def bow_scene_embeddings(model: BagOfWords, mels: torch.Tensor) -> torch.Tensor:
    windows = tiled_windows(mels, model.front_config)  # (N, W, 1, M, T)
    return model.embed(windows.flatten(0, 1)).reshape(*windows.shape[:2], -1).mean(1)


def train_bow(
    data: AudioData, mels: dict[str, torch.Tensor], config: TrainConfig, model_config: BowConfig, progress: bool = True
) -> tuple[BagOfWords, dict[str, Any]]:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = BagOfWords(model_config)
    started = time.perf_counter()
    windows = random_windows(mels["train"], model.front_config.frames, generator)
    reconstruction = _train_autoencoder(model, windows, config, generator)
    _fit_codebooks(model, windows, config)
    model.fit_idf(windows)
    model.eval()
    train_embeddings = bow_scene_embeddings(model, mels["train"])
    labels = torch.from_numpy(data.train_labels)
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=config.lr, weight_decay=0.01)
    for _ in tqdm(range(config.head_epochs), desc="bow head", disable=not progress, leave=False):
        for batch in _batches(len(labels), config.batch_size, generator):
            loss = F.cross_entropy(model.head(train_embeddings[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        logits = model.head(bow_scene_embeddings(model, mels["test"]))
    metrics = {
        "test_accuracy": float((logits.argmax(1).numpy() == data.test_labels).mean()),
        "reconstruction_mse": reconstruction,
        "train_seconds": time.perf_counter() - started,
    }
    return model.eval(), metrics


def save_checkpoint(
    path: Path, model: Passt | BagOfWords, metrics: dict[str, Any], data_config: AudioDataConfig
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "kind": type(model).__name__,
            "config": model.to_config(),
            "state_dict": model.state_dict(),
            "metrics": metrics,
            "data_config": asdict(data_config),
        },
        path,
    )
    return path


def load_checkpoint(path: Path) -> tuple[Passt | BagOfWords, dict[str, Any]]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model: Passt | BagOfWords = (Passt.from_config(checkpoint["config"]) if checkpoint["kind"] == "Passt"
                                 else BagOfWords.from_config(checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint


def train_all(
    data_config: AudioDataConfig,
    config: TrainConfig,
    out: Path,
    compare_patchout: bool = True,
    passt_config: PasstConfig | None = None,
    bow_config: BowConfig | None = None,
    progress: bool = True,
    only: tuple[str, ...] = ("passt", "bow"),
) -> dict[str, Any]:
    """Trains and saves passt.pt and bow.pt (and the no-patchout PaSST for the comparison);
    `only` retrains a subset (each embedder has its own seeds, so the others are unaffected) and
    merges its figures into an existing quality.json."""
    started = time.perf_counter()
    passt_config, bow_config = passt_config or PasstConfig(), bow_config or BowConfig()
    data = make_audio_data(data_config)
    front = FrontEndConfig()
    mels = {"train": clip_mels(data.train_audio, front), "test": clip_mels(data.test_audio, front)}
    previous = out / "quality.json"
    quality: dict[str, Any] = json.loads(previous.read_text()) if previous.is_file() and len(only) < 2 else {}
    if "passt" in only:
        passt, quality["passt"] = train_passt(data, mels, config, passt_config, progress)
        save_checkpoint(out / "passt.pt", passt, quality["passt"], data_config)
    if "passt" in only and compare_patchout:
        plain = replace(passt_config, drop_freq_rows=0, drop_time_cols=0, drop_patches=0.0)
        _, quality["passt_no_patchout"] = train_passt(data, mels, config, plain, progress)
    if "bow" in only:
        bow, quality["bow"] = train_bow(data, mels, config, bow_config, progress)
        save_checkpoint(out / "bow.pt", bow, quality["bow"], data_config)
    quality.update(data_config=asdict(data_config), train_config=asdict(config))
    quality.setdefault("wall_seconds_by_run", {})[",".join(only)] = time.perf_counter() - started
    (out / "quality.json").write_text(json.dumps(quality, indent=2) + "\n")
    return quality


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m models.audio.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/audio"), help="checkpoint dir")
    parser.add_argument("--quick", action="store_true", help="tiny data, 1 epoch: smoke test")
    parser.add_argument("--no-compare", action="store_true", help="skip the PaSST run without patchout")
    parser.add_argument("--only", nargs="+", choices=("passt", "bow"), default=("passt", "bow"),
                        help="retrain these embedders only (figures merge into quality.json)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 by default: on shared cores two spinning threads cost ~8x the CPU")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data_config, config = AudioDataConfig(), TrainConfig()
    if args.quick:
        data_config = replace(data_config, clips_per_class=12, event_clips=4)
        config = replace(config, passt_epochs=1, autoencoder_epochs=1, head_epochs=5)
    quality = train_all(data_config, config, args.out, not args.no_compare, progress=not args.no_progress,
                        only=tuple(args.only))
    print(json.dumps({k: quality[k] for k in ("passt", "passt_no_patchout", "bow") if k in quality}, indent=2))
    return quality


if __name__ == "__main__":
    main()
