"""The two non-codec baselines of the splitcompute report (Matsubara et al., WACV 2022, section 4):

- feature compression: the teacher's own split-point features (B, 48, 12, 12), clipped to
  [0, f_max] (f_max = their 99.9th percentile on the validation split), quantized to uint8 with
  a step of f_max / levels and coded losslessly by zlib (level 9) or as a PNG (the channels
  tiled into one grey image); the server dequantizes and runs the teacher's tail;
- learned input compression: the factorized-prior image autoencoder (models/splitcompute/
  image_codec.py), its latent coded by the same range coder as the student's, its decoded image
  classified by each teacher.

"Sent" bytes add the student's frame header (17 bytes) to both: a device would need the same
framing (shape, version, checksum) for them.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import torch
from PIL import Image

from benchmarks.splitcompute.rates import RatePoint, png_data_bytes, teacher_accuracy
from infersuite.services.splitcompute import wire
from infersuite.services.splitcompute.codec import Codec
from models.splitcompute.data import to_float
from models.splitcompute.image_codec import FactorizedPriorAutoencoder
from models.splitcompute.teacher import TeacherCNN
from models.splitcompute.train import accuracy_of

FEATURE_LEVELS = (255, 63, 15, 7, 3, 1)  # quantization levels over [0, f_max]: step = f_max / levels


@torch.no_grad()
def teacher_features(teacher: TeacherCNN, images: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) uint8 -> the split-point features (N, C, h, w) float32."""
    return torch.cat([teacher.forward_features(torch.from_numpy(to_float(images[i:i + 250])))
                      for i in range(0, len(images), 250)]).numpy()


def tile_channels(symbols: np.ndarray) -> np.ndarray:
    """(C, h, w) uint8 -> one grey image (rows * h, cols * w), channels in a near-square grid."""
    channels, h, w = symbols.shape
    cols = int(np.ceil(np.sqrt(channels)))
    rows = -(-channels // cols)
    padded = np.zeros((rows * cols, h, w), np.uint8)
    padded[:channels] = symbols
    return padded.reshape(rows, cols, h, w).transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


def _png_bytes(symbols: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(tile_channels(symbols)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


@torch.no_grad()
def feature_points(teacher: TeacherCNN, valid_images: np.ndarray, images: np.ndarray,
                   labels: np.ndarray) -> list[RatePoint]:
    f_max = float(np.percentile(teacher_features(teacher, valid_images), 99.9))
    features = teacher_features(teacher, images)
    points = []
    for levels in FEATURE_LEVELS:
        step = f_max / levels
        symbols = np.clip(np.rint(features / step), 0, levels).astype(np.uint8)  # (N, C, h, w)
        logits = teacher.tail(torch.from_numpy(symbols.astype(np.float32) * step)).numpy()
        accuracy = accuracy_of(logits, labels)
        setting = f"{levels + 1} levels (step {step:.3g})"
        for name, coded in (("zlib", [len(zlib.compress(s.tobytes(), 9)) for s in symbols]),
                            ("PNG", [png_data_bytes(_png_bytes(s)) for s in symbols])):
            payload = float(np.mean(coded))
            points.append(RatePoint(f"features {name} -> teacher tail", setting, accuracy,
                                    payload + wire.HEADER_BYTES, payload))
    return points


@torch.no_grad()
def image_codec_points(codecs: dict[float, FactorizedPriorAutoencoder], teachers: dict[str, TeacherCNN],
                       images: np.ndarray, labels: np.ndarray) -> list[RatePoint]:
    """Each autoencoder: range-coded latent per image (batch 1), decoded image -> each teacher."""
    points = []
    for lmbda, model in codecs.items():
        pmf, radius = model.prior.pmf_table()
        latent = model.analysis(torch.from_numpy(to_float(images)))
        symbols = torch.clamp(torch.round(latent), -radius, radius)  # (N, M, h, w)
        _, channels, height, width = symbols.shape
        codec = Codec(1, (channels, height, width), pmf)
        ints = symbols.numpy().astype(np.int32)
        bodies = [codec.encode(s) for s in ints]
        decoded = torch.from_numpy(np.stack([codec.decode(b) for b in bodies]))
        if not torch.equal(decoded, symbols):
            raise AssertionError("entropy decoding did not reproduce the autoencoder's symbols")
        reconstructed = model.decode_image(decoded)
        payload = float(np.mean([len(b) for b in bodies]))
        estimate = float(np.mean([codec.estimated_bits(s) for s in ints])) / 8
        for teacher_name, teacher in teachers.items():
            points.append(RatePoint(f"learned image codec -> {teacher_name}", f"lambda={lmbda:g}",
                                    teacher_accuracy(teacher, reconstructed, labels),
                                    payload + wire.HEADER_BYTES, payload, estimate))
    return points
