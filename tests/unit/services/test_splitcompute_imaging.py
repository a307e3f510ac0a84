"""The split-computing image policy: RGB, shorter side to the model's size, centre crop; files bounded
before decoding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile

from infersuite.services.splitcompute import imaging
from infersuite.services.splitcompute.imaging import ImageError, fit_image, load_image


def test_a_wide_image_keeps_its_centre_and_its_aspect() -> None:
    # left third red, middle third green, right third blue: the centre crop of a 3:1 image is the green third
    image = np.zeros((40, 120, 3), np.uint8)
    image[:, :40, 0], image[:, 40:80, 1], image[:, 80:, 2] = 255, 255, 255
    fitted = fit_image(image, 16)
    assert fitted.shape == (3, 16, 16) and fitted.dtype == np.uint8
    assert fitted[1, 2:14, 2:14].min() == 255 and fitted[0, 2:14, 2:14].max() == 0 and fitted[2, 2:14, 2:14].max() == 0


def test_channel_first_and_channel_last_give_the_same_pixels() -> None:
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    np.testing.assert_array_equal(fit_image(hwc, 24), fit_image(hwc.transpose(2, 0, 1), 24))


def test_grey_palette_and_transparent_files_become_rgb(tmp_path) -> None:
    Image.new("L", (30, 20), 128).save(tmp_path / "grey.png")
    Image.new("P", (30, 20), 3).save(tmp_path / "palette.gif")
    Image.new("RGBA", (30, 20), (255, 0, 0, 0)).save(tmp_path / "clear.png")  # fully transparent red: white
    assert load_image(tmp_path / "grey.png", 8).shape == (3, 8, 8)
    assert (load_image(tmp_path / "grey.png", 8) == 128).all()
    assert load_image(tmp_path / "palette.gif", 8).shape == (3, 8, 8)
    assert (load_image(tmp_path / "clear.png", 8) == 255).all()


def test_an_oversized_file_is_refused_from_its_header_naming_the_file(tmp_path, monkeypatch) -> None:
    Image.new("RGB", (200, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(imaging, "MAX_PIXELS", 19_999)
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self))  # must not be reached
    with pytest.raises(ImageError, match=r"big\.png: 200x100 is 20,000 pixels"):
        load_image(tmp_path / "big.png", 8)
    assert not decoded


def test_a_file_that_is_not_an_image_is_named(tmp_path) -> None:
    (tmp_path / "notes.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageError, match=r"notes\.jpg: not a readable image"):
        load_image(tmp_path / "notes.jpg", 8)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                                 np.zeros((4, 4, 5), np.uint8)])
def test_arrays_that_are_not_uint8_rgb_images_are_refused(bad) -> None:
    with pytest.raises(ImageError, match="must be uint8"):
        fit_image(bad, 8)
