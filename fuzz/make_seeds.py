"""Writes the seed corpus kept in the repo (small valid and near-valid inputs per harness).

    python -m fuzz.make_seeds      # rewrites fuzz/corpus/{wav,image,splitcompute}/
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

CORPUS = Path(__file__).resolve().parent / "corpus"


def _wav(samples: np.ndarray, rate: int, subtype: str) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def wav_seeds() -> dict[str, bytes]:
    tone = (0.3 * np.sin(np.linspace(0, 20, 64))).astype(np.float32)
    return {"pcm16_mono.wav": _wav(tone, 8000, "PCM_16"),
            "pcm24_stereo.wav": _wav(np.stack([tone, -tone], 1), 16000, "PCM_24"),
            "float32.wav": _wav(tone, 44100, "FLOAT"),
            "float64.wav": _wav(tone, 22050, "DOUBLE"),
            "raw_f32": b"\x00" + struct.pack("<II", 16000, 1) + tone.tobytes()}


def _image(array: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def image_seeds() -> dict[str, bytes]:
    rgb = (np.arange(6 * 5 * 3) * 7 % 256).astype(np.uint8).reshape(6, 5, 3)
    return {"rgb.png": _image(rgb, "PNG"), "grey.png": _image(rgb[:, :, 0], "PNG"),
            "rgba.png": _image(np.dstack([rgb, rgb[:, :, :1]]), "PNG"),
            "palette.png": _palette(rgb), "rgb.jpg": _image(rgb, "JPEG", quality=70),
            "grey16.png": _image(rgb[:, :, 0].astype(np.uint16) * 200, "PNG"),
            "raw": b"\x00" + struct.pack("<IIB", 6, 5, 3) + rgb.tobytes()}


def _palette(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert("P").save(buffer, format="PNG")
    return buffer.getvalue()


def splitcompute_seeds() -> dict[str, bytes]:
    from fuzz.splitcompute_payload import CODEC
    from infersuite.services.splitcompute import wire

    rng = np.random.default_rng(0)
    symbols = np.clip(np.rint(rng.laplace(0, 1.5, CODEC.latent_shape)), -CODEC.radius, CODEC.radius).astype(np.int32)
    body = CODEC.encode(symbols)
    return {"frame": b"\x00" + wire.pack(CODEC.version, CODEC.latent_shape, body), "body": b"\x01" + body,
            "zeros_body": b"\x01" + CODEC.encode(np.zeros(CODEC.latent_shape, np.int32))}


def main() -> None:
    for name, seeds in [("wav", wav_seeds()), ("image", image_seeds()), ("splitcompute", splitcompute_seeds())]:
        folder = CORPUS / name
        folder.mkdir(parents=True, exist_ok=True)
        for file, data in seeds.items():
            (folder / file).write_bytes(data)
        print(f"{folder}: {len(seeds)} seeds, {sum(map(len, seeds.values()))} bytes")


if __name__ == "__main__":
    main()
