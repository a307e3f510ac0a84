"""Image in, mask out: decoding with size limits checked BEFORE any pixel is decoded, raw-pixel
validation, resizing to the model's input and back, mask encoding. No grpc, no model.

Decompression bombs: `Image.open` reads only the header; its width and height are checked
against the configured limits before `load()` decodes anything, and PIL's own guard
(`Image.MAX_IMAGE_PIXELS`) is set to the same limit as a second line of defence.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from infersuite.services.runtime import InvalidArgument

ACCEPTED_FORMATS = ("PNG", "JPEG")
RAW_CHANNELS = (1, 3, 4)
# 16-bit and float modes would be clipped to 8 bits by PIL's RGB conversion: refused, not mangled.
UNSUPPORTED_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_side: int
    max_pixels: int


def check_dimensions(height: int, width: int, limits: ImageLimits, field: str) -> None:
    if height <= 0 or width <= 0:
        raise InvalidArgument(f"{field} is {height}x{width}: height and width must be at least 1")
    if max(height, width) > limits.max_side:
        raise InvalidArgument(f"{field} is {height}x{width}: a side exceeds the maximum of {limits.max_side} pixels")
    if height * width > limits.max_pixels:
        raise InvalidArgument(
            f"{field} is {height}x{width} = {height * width} pixels, more than the maximum of {limits.max_pixels}")


def decode_image(data: bytes, limits: ImageLimits) -> np.ndarray:
    """PNG/JPEG bytes -> (H, W, 3) uint8 RGB; InvalidArgument for anything else."""
    if not data:
        raise InvalidArgument("image.encoded is empty: send PNG or JPEG bytes")
    if len(data) > limits.max_bytes:
        raise InvalidArgument(f"image.encoded has {len(data)} bytes, more than the maximum of {limits.max_bytes}")
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as image:
                width, height = image.size  # header only: nothing decoded yet
                check_dimensions(height, width, limits, "image.encoded")
                if image.mode in UNSUPPORTED_MODES:
                    raise InvalidArgument(f"image.encoded has pixel mode {image.mode}: only 8-bit images are supported")
                image.load()
                rgb = image.convert("RGB")
    except InvalidArgument:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # PIL's own guard fires inside Image.open, from the header, before our size check.
        raise InvalidArgument(f"image.encoded declares more than the maximum of {limits.max_pixels} pixels: "
                              "refused before decoding") from None
    except Image.UnidentifiedImageError:
        raise InvalidArgument("image.encoded is not a decodable PNG or JPEG image") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidArgument(f"image.encoded could not be decoded: {exc}") from None
    return np.asarray(rgb, dtype=np.uint8)


def raw_image(pixels: bytes, height: int, width: int, channels: int, limits: ImageLimits) -> np.ndarray:
    """Raw row-major 8-bit pixels -> (H, W, 3) uint8 RGB (grey is repeated, alpha dropped)."""
    if channels not in RAW_CHANNELS:
        raise InvalidArgument(f"image.raw.channels is {channels}: supported are 1 (grey), 3 (RGB), 4 (RGBA)")
    check_dimensions(height, width, limits, "image.raw")
    expected = height * width * channels
    if len(pixels) != expected:
        raise InvalidArgument(f"image.raw.pixels has {len(pixels)} bytes but {height}x{width}x{channels} "
                              f"needs exactly {expected}")
    array = np.frombuffer(pixels, np.uint8).reshape(height, width, channels)
    if channels == 1:
        return np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def to_model_input(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (1, 3, size, size) float32 in [0, 1]; bilinear resize only when needed."""
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def mask_to_size(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """(S, S) uint8 class ids -> (height, width) by nearest neighbour (class ids are not blended)."""
    if mask.shape == (height, width):
        return mask
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.Resampling.NEAREST))


def encode_mask_png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return buffer.getvalue()
