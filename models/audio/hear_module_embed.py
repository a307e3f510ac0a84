"""Scene embeddings of audio files by any module that follows the HEAR 2021 API (load_model, get_scene_embeddings,
model.sample_rate), run by that module's own Python: a module whose pinned dependencies cannot share the project's
environment (the public HEAR 2021 baseline, `hearbaseline`, pins numpy 1.19 and tensorflow) is evaluated beside
the project's embedders from a virtual environment of its own (`make hear-baseline`).

    PYTHON -m models.audio.hear_module_embed --module hearbaseline --files FILES.txt --out OUT.npz [--timestamps]

It needs only numpy, scipy, soundfile and torch besides the module and imports nothing of this project (the
packages above it, models and models.audio, import nothing): run it from the project's root with the module's
interpreter. Each file is read as mono (channel mean), resampled to the
module's rate with scipy's polyphase filter, embedded one file at a time; OUT.npz maps each line of FILES.txt
(by position: arrays `embeddings` (files, dim) and `files`) to its scene embedding. With --timestamps, the
module's timestamp embeddings instead: `embeddings` (all files' timestamps, dim) concatenated in file order,
`timestamps` (ms, the same rows) and `lengths` (timestamps per file).
"""

from __future__ import annotations

import argparse
import importlib
from math import gcd
from pathlib import Path

import numpy as np
import soundfile
import torch
from scipy.signal import resample_poly


def read_at(path: str, rate: int) -> np.ndarray:
    samples, source = soundfile.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if source != rate:
        step = gcd(source, rate)
        mono = resample_poly(mono, rate // step, source // step).astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.audio.hear_module_embed",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", required=True, help="an importable HEAR API module, e.g. hearbaseline")
    parser.add_argument("--files", type=Path, required=True, help="one audio file per line")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--timestamps", action="store_true", help="timestamp embeddings instead of scene ones")
    args = parser.parse_args(argv)
    module = importlib.import_module(args.module)
    model = module.load_model()
    files = [line for line in args.files.read_text().splitlines() if line]
    vectors, stamps = [], []
    with torch.no_grad():
        for file in files:
            audio = torch.from_numpy(read_at(file, int(model.sample_rate)))[None]
            if args.timestamps:
                embeddings, times = module.get_timestamp_embeddings(audio, model)
                vectors.append(embeddings[0].numpy())
                stamps.append(times[0].numpy().astype(np.float64))
            else:
                vectors.append(module.get_scene_embeddings(audio, model)[0].numpy())
    if args.timestamps:
        np.savez(args.out, embeddings=np.concatenate(vectors), timestamps=np.concatenate(stamps),
                 lengths=np.array([len(t) for t in stamps]), files=np.array(files))
    else:
        np.savez(args.out, embeddings=np.stack(vectors), files=np.array(files))
    print(f"{len(files)} {'timestamp' if args.timestamps else 'scene'} embeddings by {args.module} "
          f"({vectors[0].shape[-1]} dims) -> {args.out}")


if __name__ == "__main__":
    main()
