"""Rate-accuracy measurements for the splitcompute report: the Entropic Student at every beta
(actual range-coded bytes per image at batch 1) against JPEG/WebP input compression fed to the
teacher. Pillow for the codecs; sizes both as the whole file and without container headers."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from models.splitcompute.data import to_float
from models.splitcompute.student import EntropicStudent
from models.splitcompute.teacher import TeacherCNN
from models.splitcompute.train import quantized_latents
from services.splitcompute import wire
from services.splitcompute.codec import Codec

JPEG_QUALITIES = (5, 10, 15, 20, 30, 40, 50, 70, 90)
WEBP_QUALITIES = (0, 5, 10, 20, 30, 50, 70, 90)


@dataclass(frozen=True)
class RatePoint:
    method: str  # "student beta=..", "JPEG", "WebP", "teacher (raw)"
    setting: str  # beta or quality
    accuracy: float
    bytes_full: float  # mean bytes per image a device sends (frame / whole file)
    bytes_payload: float  # mean bytes without container headers (body / entropy-coded data)
    estimated_bytes: float | None = None  # student only: the prior's -log2 p / 8


def jpeg_scan_bytes(data: bytes) -> int:
    """Bytes of a baseline JPEG's entropy-coded scan: after the SOS segment, before EOI."""
    offset = 2  # SOI
    while offset < len(data):
        marker, length = data[offset + 1], struct.unpack(">H", data[offset + 2:offset + 4])[0]
        offset += 2 + length
        if marker == 0xDA:  # SOS: the scan data follows its header
            return len(data) - offset - 2
    raise ValueError("no SOS marker")


def webp_bitstream_bytes(data: bytes) -> int:
    """Bytes of the VP8/VP8L chunk payloads of a WebP file (RIFF and chunk headers excluded)."""
    offset, total = 12, 0
    while offset + 8 <= len(data):
        tag, size = data[offset:offset + 4], struct.unpack("<I", data[offset + 4:offset + 8])[0]
        if tag in (b"VP8 ", b"VP8L"):
            total += size
        offset += 8 + size + (size & 1)
    return total


def compress(image_hwc: np.ndarray, fmt: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    options = {"optimize": True} if fmt == "JPEG" else {"method": 6}
    Image.fromarray(image_hwc).save(buffer, format=fmt, quality=quality, **options)
    return buffer.getvalue()


def decompress(data: bytes) -> np.ndarray:
    """File bytes -> (3, H, W) uint8."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).transpose(2, 0, 1)


@torch.no_grad()
def teacher_accuracy(teacher: TeacherCNN, images: np.ndarray, labels: np.ndarray) -> float:
    logits = torch.cat([teacher(torch.from_numpy(to_float(images[i:i + 250]))) for i in range(0, len(images), 250)])
    return float((logits.argmax(dim=1).numpy() == labels).mean())


def codec_points(teacher: TeacherCNN, images: np.ndarray, labels: np.ndarray) -> list[RatePoint]:
    points = []
    hwc = images.transpose(0, 2, 3, 1)
    for fmt, qualities, headerless in (("JPEG", JPEG_QUALITIES, jpeg_scan_bytes),
                                       ("WebP", WEBP_QUALITIES, webp_bitstream_bytes)):
        for quality in qualities:
            files = [compress(image, fmt, quality) for image in hwc]
            decoded = np.stack([decompress(f) for f in files])
            points.append(RatePoint(fmt, f"q={quality}", teacher_accuracy(teacher, decoded, labels),
                                    float(np.mean([len(f) for f in files])),
                                    float(np.mean([headerless(f) for f in files]))))
    return points


def student_codec(student: EntropicStudent, version: int = 1) -> Codec:
    pmf, _ = student.prior.pmf_table()
    return Codec(version, student.config.latent_shape, pmf)


@torch.no_grad()
def student_point(student: EntropicStudent, beta: float, images: np.ndarray, labels: np.ndarray) -> RatePoint:
    """Codes every image on its own (batch 1) and classifies the decoded symbols."""
    codec = student_codec(student)
    symbols = quantized_latents(student, images, codec.radius).numpy().astype(np.int32)  # (N, C, h, w)
    bodies = [codec.encode(s) for s in symbols]
    decoded = torch.from_numpy(np.stack([codec.decode(b) for b in bodies]))
    if not torch.equal(decoded, torch.from_numpy(symbols.astype(np.float32))):
        raise AssertionError("entropy decoding did not reproduce the symbols")
    logits = torch.cat([student.tail(student.decoder(decoded[i:i + 250])) for i in range(0, len(decoded), 250)])
    body = float(np.mean([len(b) for b in bodies]))
    estimate = float(np.mean([codec.estimated_bits(s) for s in symbols])) / 8
    return RatePoint("student", f"beta={beta:g}", float((logits.argmax(dim=1).numpy() == labels).mean()),
                     body + wire.HEADER_BYTES, body, estimate)
