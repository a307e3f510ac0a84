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

from models.splitcompute.data import to_float
from models.splitcompute.student import EntropicStudent
from models.splitcompute.teacher import TeacherCNN
from models.splitcompute.train import quantized_latents
from services.splitcompute import wire
from services.splitcompute.codec import Codec

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
def teacher_accuracy(teacher: TeacherCNN, images: np.ndarray, labels: np.ndarray) -> float:
    logits = torch.cat([teacher(torch.from_numpy(to_float(images[i:i + 250]))) for i in range(0, len(images), 250)])
    return float((logits.argmax(dim=1).numpy() == labels).mean())


def codec_points(teachers: dict[str, TeacherCNN], images: np.ndarray, labels: np.ndarray) -> list[RatePoint]:
    """Every input codec setting, its decoded images classified by each teacher (curve "<codec> -> <teacher>")."""
    points = []
    hwc = images.transpose(0, 2, 3, 1)
    for name, (fmt, options, qualities) in INPUT_CODECS.items():
        for quality in qualities:
            files = [compress(image, fmt, quality, **options) for image in hwc]
            decoded = np.stack([decompress(f) for f in files])
            full = float(np.mean([len(f) for f in files]))
            payload = float(np.mean([HEADERLESS[fmt](f) for f in files]))
            setting = "lossless" if quality is None else f"q={quality}"
            for teacher_name, teacher in teachers.items():
                points.append(RatePoint(f"{name} -> {teacher_name}", setting,
                                        teacher_accuracy(teacher, decoded, labels), full, payload))
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
