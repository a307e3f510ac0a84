"""The split-computing family's image policy, shared by training on a user's images and the edge SDK.

Images of any size and mode are fitted to the model's square input the same way at training and on
the device: converted to RGB (palette and grey images expanded; an alpha channel composited on
white), the shorter side scaled to the model's side (bilinear, antialiased when shrinking), then the
centre square kept. A device that resizes differently feeds the encoder images it was not trained
on, so the SDK does this itself (`EdgeEncoder.encode(image, fit=True)`).

A file is bounded before it is decoded: more than `MAX_PIXELS` pixels (read from the header) is
refused, so a decompression bomb never allocates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

MAX_PIXELS = 50_000_000  # width x height of the largest image accepted (a 7,000 x 7,000 photo)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class ImageError(ValueError):
    """An image that cannot be used, with the reason (and the file, when there is one)."""


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def fit_pil(image: Image.Image, size: int) -> np.ndarray:
    """A decoded PIL image -> (3, size, size) uint8: RGB, shorter side to `size`, centre crop."""
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = _rgb(image).resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(resized.crop((left, top, left + size, top + size)), np.uint8).transpose(2, 0, 1).copy()


def fit_image(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) or (3, H, W) uint8 of any size -> (3, size, size) uint8 by the family's policy."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or 3 not in (array.shape[0], array.shape[-1]):
        raise ImageError(f"an image must be uint8 (H, W, 3) or (3, H, W), got {array.dtype} {array.shape}")
    hwc = array if array.shape[-1] == 3 else array.transpose(1, 2, 0)
    if hwc.shape[0] * hwc.shape[1] > MAX_PIXELS:
        raise ImageError(f"image has {hwc.shape[0] * hwc.shape[1]:,} pixels; at most {MAX_PIXELS:,} are accepted")
    return fit_pil(Image.fromarray(np.ascontiguousarray(hwc)), size)


def load_image(path: Path | str, size: int) -> np.ndarray:
    """An image file -> (3, size, size) uint8; unreadable or oversized files raise ImageError naming the file."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > MAX_PIXELS:
                raise ImageError(f"{path}: {width}x{height} is {width * height:,} pixels; "
                                 f"at most {MAX_PIXELS:,} are accepted")
            image.load()
            return fit_pil(image, size)
    except ImageError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from None
