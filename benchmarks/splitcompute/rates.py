"""Rate-accuracy measurements for the splitcompute report: the Entropic Student at every beta
(actual range-coded bytes per image at batch 1) against input compression fed to the teacher:
JPEG at 4:2:0 and 4:4:4 chroma up to q=100, WebP up to lossless, PNG (Pillow). Sizes both as the
whole file and without container headers."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from infersuite.services.splitcompute import wire
from infersuite.services.splitcompute.codec import Codec
from models.splitcompute.data import to_float
from models.splitcompute.student import EntropicStudent
from models.splitcompute.teacher import TeacherCNN
from models.splitcompute.train import quantized_latents

JPEG_QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100)
WEBP_QUALITIES = (0, 5, 10, 20, 30, 50, 70, 90, 100)
# curve name -> (Pillow format, options, qualities); quality None = the codec's lossless mode
INPUT_CODECS: dict[str, tuple[str, dict[str, Any], tuple[int | None, ...]]] = {
    "JPEG 4:2:0": ("JPEG", {"optimize": True, "subsampling": 2}, JPEG_QUALITIES),
    "JPEG 4:4:4": ("JPEG", {"optimize": True, "subsampling": 0}, JPEG_QUALITIES),
    "WebP": ("WEBP", {"method": 6}, (*WEBP_QUALITIES, None)),
    "PNG": ("PNG", {"optimize": True}, (None,)),
}


@dataclass(frozen=True)
class RatePoint:
    method: str  # the curve: "student", "JPEG 4:4:4 -> teacher", "feature zlib -> teacher", ...
    setting: str  # beta, quality, step or lambda
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


def png_data_bytes(data: bytes) -> int:
    """Bytes of a PNG's IDAT chunk payloads (the deflate stream; signature and other chunks excluded)."""
    offset, total = 8, 0
    while offset + 8 <= len(data):
        size, tag = struct.unpack(">I", data[offset:offset + 4])[0], data[offset + 4:offset + 8]
        if tag == b"IDAT":
            total += size
        offset += 12 + size
    return total


HEADERLESS = {"JPEG": jpeg_scan_bytes, "WEBP": webp_bitstream_bytes, "PNG": png_data_bytes}


def compress(image_hwc: np.ndarray, fmt: str, quality: int | None = None, **options: Any) -> bytes:
    """One image coded by Pillow; quality None = lossless (WebP) or PNG."""
    buffer = io.BytesIO()
    if fmt == "JPEG" and not options:
        options = {"optimize": True}
    if fmt == "WEBP" and quality is None:
        # quality and method are effort in lossless mode: method 6 / quality 100 took 1.3 s per 96 px image
        # here and came out 0.5% larger than method 4 / quality 50 (12 ms)
        options = {**options, "lossless": True, "quality": 50, "method": 4}
    elif quality is not None:
        options = {**options, "quality": quality}
    Image.fromarray(image_hwc).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def decompress(data: bytes) -> np.ndarray:
    """File bytes -> (3, H, W) uint8."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).transpose(2, 0, 1)


@torch.no_grad()
def teacher_correct(teacher: TeacherCNN, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image: 1.0 where the teacher's class is right, else 0.0."""
    logits = torch.cat([teacher(torch.from_numpy(to_float(images[i:i + 250]))) for i in range(0, len(images), 250)])
    return (logits.argmax(dim=1).numpy() == labels).astype(np.float64)


def teacher_accuracy(teacher: TeacherCNN, images: np.ndarray, labels: np.ndarray) -> float:
    return float(teacher_correct(teacher, images, labels).mean())


@dataclass(frozen=True)
class Coded:
    """One codec setting applied to every image on its own: the decoded images and each file's sizes."""

    codec: str  # curve name, e.g. "JPEG 4:4:4"
    setting: str  # "q=30" or "lossless"
    decoded: np.ndarray  # (N, 3, H, W) uint8
    full: np.ndarray  # (N,) bytes of each whole file
    payload: np.ndarray  # (N,) bytes without container headers


def coded_images(images: np.ndarray, codecs: dict[str, tuple[str, dict[str, Any], tuple[int | None, ...]]]
                 = INPUT_CODECS) -> list[Coded]:
    """Every setting of `codecs` (INPUT_CODECS' layout) applied to each image of (N, 3, H, W) uint8."""
    out = []
    hwc = images.transpose(0, 2, 3, 1)
    for name, (fmt, options, qualities) in codecs.items():
        for quality in qualities:
            files = [compress(image, fmt, quality, **options) for image in hwc]
            out.append(Coded(name, "lossless" if quality is None else f"q={quality}",
                             np.stack([decompress(f) for f in files]), np.array([len(f) for f in files], np.float64),
                             np.array([HEADERLESS[fmt](f) for f in files], np.float64)))
    return out


def codec_points(teachers: dict[str, TeacherCNN], images: np.ndarray, labels: np.ndarray) -> list[RatePoint]:
    """Every input codec setting, its decoded images classified by each teacher (curve "<codec> -> <teacher>")."""
    return [RatePoint(f"{c.codec} -> {teacher_name}", c.setting, teacher_accuracy(teacher, c.decoded, labels),
                      float(c.full.mean()), float(c.payload.mean()))
            for c in coded_images(images) for teacher_name, teacher in teachers.items()]


def student_codec(student: EntropicStudent, version: int = 1) -> Codec:
    pmf, _ = student.prior.pmf_table()
    return Codec(version, student.config.latent_shape, pmf)


@torch.no_grad()
def student_per_image(student: EntropicStudent, images: np.ndarray,
                      labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes every image on its own (batch 1), decodes and classifies the symbols: per image the body bytes,
    the prior's estimated bytes and whether the class is right (1.0 / 0.0)."""
    codec = student_codec(student)
    symbols = quantized_latents(student, images, codec.radius).numpy().astype(np.int32)  # (N, C, h, w)
    bodies = [codec.encode(s) for s in symbols]
    decoded = torch.from_numpy(np.stack([codec.decode(b) for b in bodies]))
    if not torch.equal(decoded, torch.from_numpy(symbols.astype(np.float32))):
        raise AssertionError("entropy decoding did not reproduce the symbols")
    logits = torch.cat([student.tail(student.decoder(decoded[i:i + 250])) for i in range(0, len(decoded), 250)])
    return (np.array([len(b) for b in bodies], np.float64),
            np.array([codec.estimated_bits(s) for s in symbols], np.float64) / 8,
            (logits.argmax(dim=1).numpy() == labels).astype(np.float64))


def student_point(student: EntropicStudent, beta: float, images: np.ndarray, labels: np.ndarray) -> RatePoint:
    """The student's curve point: mean bytes (frame and body) and accuracy, each image coded on its own."""
    body, estimate, correct = student_per_image(student, images, labels)
    return RatePoint("student", f"beta={beta:g}", float(correct.mean()), float(body.mean()) + wire.HEADER_BYTES,
                     float(body.mean()), float(estimate.mean()))
