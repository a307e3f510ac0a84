"""Fuzzes the segmentation service's image decoding (infersuite/services/segmentation/imaging.py)."""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["infersuite", "PIL"]):
    from infersuite.services.runtime import InvalidArgument
    from infersuite.services.segmentation.imaging import ImageLimits, decode_image, raw_image

from fuzz._harness import main

LIMITS = ImageLimits(max_bytes=1 << 20, max_side=2048, max_pixels=1 << 20)


def test_one_input(data: bytes) -> None:
    try:
        if data[:1] == b"\x00":  # raw pixels: height, width, channels from the next bytes
            provider = atheris.FuzzedDataProvider(data[1:])
            height, width = provider.ConsumeIntInRange(0, 5000), provider.ConsumeIntInRange(0, 5000)
            channels = provider.ConsumeIntInRange(0, 5)
            image = raw_image(provider.ConsumeBytes(1 << 16), height, width, channels, LIMITS)
        else:
            image = decode_image(data, LIMITS)
    except InvalidArgument as exc:
        assert exc.message
        return
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype.name == "uint8"
    assert image.shape[0] * image.shape[1] <= LIMITS.max_pixels


if __name__ == "__main__":
    main(test_one_input)
