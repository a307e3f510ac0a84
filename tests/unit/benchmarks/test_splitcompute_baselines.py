"""The splitcompute report's baselines and stage-1 variants on tiny untrained models (fast, no sockets)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.splitcompute.baselines import feature_points, image_codec_points, tile_channels
from benchmarks.splitcompute.compare import BEST_INPUT_CODEC, compare
from benchmarks.splitcompute.rates import HEADERLESS, RatePoint, compress, decompress
from benchmarks.splitcompute.report import image_codec_checkpoints
from benchmarks.splitcompute.studies import CODEC_LAMBDAS, codec_study_config
from models.splitcompute.augment import AugmentConfig, augment
from models.splitcompute.data import ShapeDataConfig, make_shape_data
from models.splitcompute.image_codec import FactorizedPriorAutoencoder, ImageCodecConfig, checkpoint_name
from models.splitcompute.student import EntropicStudent, StudentConfig
from models.splitcompute.teacher import TeacherCNN
from models.splitcompute.train import _distillation_loss, single_thread

DATA = make_shape_data(ShapeDataConfig(n_train=8, n_valid=8, n_test=8, seed=5))


@pytest.fixture(autouse=True)
def one_torch_thread():
    with single_thread():
        yield


@pytest.mark.parametrize(("fmt", "options"), [("WEBP", {"method": 6}), ("PNG", {"optimize": True})])
def test_lossless_codecs_decode_exactly_and_their_payload_excludes_headers(fmt: str, options: dict) -> None:
    image = DATA.images[0]
    data = compress(image.transpose(1, 2, 0).copy(), fmt, None, **options)
    np.testing.assert_array_equal(decompress(data), image)
    assert 0 < HEADERLESS[fmt](data) < len(data)


def test_jpeg_4_4_4_keeps_chroma_that_4_2_0_subsampling_blurs() -> None:
    image = DATA.images[1].transpose(1, 2, 0).copy()
    errors = {s: np.abs(decompress(compress(image, "JPEG", 95, optimize=True, subsampling=s)).astype(int)
                        - DATA.images[1]).mean() for s in (0, 2)}
    assert errors[0] < errors[2]


def test_augmentation_codes_images_except_the_clean_share() -> None:
    images = DATA.images[:6]
    untouched = augment(images, np.random.default_rng(0), AugmentConfig(clean_share=1.0))
    np.testing.assert_array_equal(untouched, images)
    coded = augment(images, np.random.default_rng(0), AugmentConfig(clean_share=0.0, max_quality=20))
    assert coded.shape == images.shape and all(not np.array_equal(a, b) for a, b in zip(coded, images, strict=True))


def test_channel_tiles_hold_every_channel_in_place() -> None:
    symbols = np.arange(5 * 2 * 3, dtype=np.uint8).reshape(5, 2, 3)
    tiled = tile_channels(symbols)  # 3 x 2 grid of 2 x 3 tiles
    assert tiled.shape == (4, 9)
    np.testing.assert_array_equal(tiled[2:4, 3:6], symbols[4])
    np.testing.assert_array_equal(tiled[0:2, 6:9], symbols[2])


def test_feature_compression_gets_cheaper_with_fewer_levels() -> None:
    torch.manual_seed(0)
    teacher = TeacherCNN().eval()
    points = feature_points(teacher, DATA.split("valid")[0], *DATA.split("test"))
    zlib_bytes = [p.bytes_payload for p in points if p.method.startswith("features zlib")]
    assert len(zlib_bytes) == 6 and zlib_bytes == sorted(zlib_bytes, reverse=True)


def test_the_learned_image_codec_range_codes_its_latent_at_the_prior_s_rate() -> None:
    torch.manual_seed(0)
    model = FactorizedPriorAutoencoder(ImageCodecConfig(channels=8, latent_channels=8)).eval()
    (point,) = image_codec_points({0.01: model}, {"teacher": TeacherCNN().eval()}, *DATA.split("test"))
    assert point.estimated_bytes is not None and point.estimated_bytes > 0
    assert abs(point.bytes_payload - point.estimated_bytes) <= 0.05 * point.estimated_bytes + 4
    reconstruction = model.decode_image(torch.zeros(2, 8, 24, 24))  # 2 downsamplings: 96 -> 24
    assert reconstruction.shape == (2, 3, 96, 96) and reconstruction.dtype == np.uint8


def test_tail_distillation_adds_the_frozen_layers_mse_to_the_split_point_s() -> None:
    torch.manual_seed(0)
    tail = TeacherCNN().tail.features.eval().requires_grad_(False)
    target = torch.rand(2, 48, 12, 12)
    assert float(_distillation_loss(target, target, tail)) == 0.0
    features = target + 0.1 * torch.randn_like(target)
    split_only = _distillation_loss(features, target, None)
    assert float(_distillation_loss(features, target, tail)) > float(split_only) > 0


def test_the_gdn_encoder_gives_the_student_s_latent_shape() -> None:
    student = EntropicStudent(StudentConfig(encoder="gdn", gdn_channels=8)).eval()
    logits, likelihood = student(torch.rand(2, 3, 96, 96))
    assert logits.shape == (2, 10) and likelihood.shape == (2, 16, 12, 12)
    with pytest.raises(ValueError, match="unknown encoder"):
        EntropicStudent(StudentConfig(encoder="resnet"))


def test_the_comparison_reports_the_student_against_the_input_codec_envelope() -> None:
    accuracies = [0.6, 0.7, 0.8, 0.9]
    points = [RatePoint("student", f"b{i}", a, 10.0 * (i + 1), 9.0 * (i + 1)) for i, a in enumerate(accuracies)]
    points += [RatePoint("JPEG 4:2:0 -> teacher", f"q{i}", a, 200.0 * (i + 1), 100.0 * (i + 1))
               for i, a in enumerate(accuracies)]
    rows = {row.baseline: row for row in compare(points)}
    assert set(rows) == {"JPEG 4:2:0 -> teacher", BEST_INPUT_CODEC}
    bd = rows[BEST_INPUT_CODEC].bd["bytes_full"]
    assert bd is not None and bd.value == pytest.approx(-0.95) and (bd.accuracy_low, bd.accuracy_high) == (0.6, 0.9)
    assert rows[BEST_INPUT_CODEC].ratios["bytes_payload"][0.8] == pytest.approx(100 / 9)


def test_the_report_reads_only_image_codecs_of_the_studies_configuration(tmp_path: Path) -> None:
    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "image_codec_lambda0.016.pt").touch()  # a cache of the earlier 4-deep configuration
    other = replace(codec_study_config(0.016), epochs=codec_study_config(0.016).epochs + 1)
    (studies / checkpoint_name(other)).touch()
    current = studies / checkpoint_name(codec_study_config(CODEC_LAMBDAS[1]))
    current.touch()
    assert image_codec_checkpoints(tmp_path) == [current]
