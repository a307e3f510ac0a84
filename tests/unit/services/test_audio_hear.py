"""The HEAR API module over the exported graphs: attributes, shapes, HEAR conventions."""

import numpy as np
import pytest

from services.audio import hear
from tests.fixtures_audio import tiny_audio  # noqa: F401


@pytest.fixture(scope="module", params=["passt", "bow"])
def model(request, tiny_audio):  # noqa: F811
    return hear.load_model(str(tiny_audio.repository / f"audio-{request.param}-fp32"))


def test_model_has_the_hear_attributes(model) -> None:
    assert model.sample_rate == 32000
    assert model.scene_embedding_size == model.timestamp_embedding_size > 0


def test_scene_embeddings_have_one_row_per_sound(model) -> None:
    audio = np.random.default_rng(0).standard_normal((3, 40000)).astype(np.float32) * 0.1
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (3, model.scene_embedding_size) and np.isfinite(scene).all()
    one = hear.get_scene_embeddings(audio[1:2], model)
    np.testing.assert_allclose(one[0], scene[1], atol=1e-5)  # batching other sounds changes nothing


def test_timestamp_embeddings_are_centred_every_50_ms(model) -> None:
    audio = np.random.default_rng(1).standard_normal((2, 16000)).astype(np.float32) * 0.1  # 0.5 s
    embeddings, timestamps = hear.get_timestamp_embeddings(audio, model)
    assert embeddings.shape == (2, 11, model.timestamp_embedding_size)
    np.testing.assert_array_equal(timestamps[0], np.arange(11) * 50.0)
    assert timestamps.shape == (2, 11)


def test_bad_shapes_and_paths_are_rejected(model, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"\(n_sounds, n_samples\)"):
        hear.get_scene_embeddings(np.zeros(100, np.float32), model)
    with pytest.raises(FileNotFoundError):
        hear.load_model(str(tmp_path))
