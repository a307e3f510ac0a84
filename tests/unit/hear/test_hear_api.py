"""The HEAR 2021 API over the exported graphs: a torch module with the HEAR attributes, torch
tensors in and out (float32, on the input's device), HEAR conventions, finite on edge audio."""

import numpy as np
import pytest
import torch

import hear_infersuite
from exporters.audio import edge_windows
from hear_infersuite import bow, passt

MODULES = {"passt": passt, "bow": bow}


@pytest.fixture(scope="module", params=["passt", "bow"])
def model(request, tiny_audio):
    return MODULES[request.param].load_model(str(tiny_audio.repository / f"audio-{request.param}-fp32"))


def _noise(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.1)


def test_model_is_a_torch_module_with_the_hear_attributes(model) -> None:
    assert isinstance(model, torch.nn.Module)
    assert model.sample_rate == 32000
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)
    assert model.scene_embedding_size == model.timestamp_embedding_size > 0
    assert model.to("cpu") is model  # what hear-eval-kit and the validator do with a torch module


def test_scene_embeddings_are_float32_tensors_one_row_per_sound(model) -> None:
    audio = _noise((3, 40000), 0)
    scene = hear_infersuite.get_scene_embeddings(audio, model)
    assert isinstance(scene, torch.Tensor) and scene.dtype == torch.float32 and scene.device == audio.device
    assert scene.shape == (3, model.scene_embedding_size) and torch.isfinite(scene).all()
    one = hear_infersuite.get_scene_embeddings(audio[1:2], model)
    torch.testing.assert_close(one[0], scene[1], atol=1e-5, rtol=0)  # batching other sounds changes nothing


def test_timestamp_embeddings_are_centred_every_50_ms_in_float32_ms(model) -> None:
    audio = _noise((2, 16000), 1)  # 0.5 s
    embeddings, timestamps = hear_infersuite.get_timestamp_embeddings(audio, model)
    assert embeddings.shape == (2, 11, model.timestamp_embedding_size) and embeddings.dtype == torch.float32
    assert timestamps.shape == (2, 11) and timestamps.dtype == torch.float32
    np.testing.assert_array_equal(timestamps[0].numpy(), np.arange(11) * 50.0)


def test_inputs_that_require_grad_are_accepted(model) -> None:
    audio = _noise((2, 33000), 2).requires_grad_(True)
    scene = hear_infersuite.get_scene_embeddings(audio, model)
    embeddings, _ = hear_infersuite.get_timestamp_embeddings(audio, model)
    plain = hear_infersuite.get_scene_embeddings(audio.detach(), model)
    torch.testing.assert_close(scene, plain)
    assert embeddings.shape[:2] == (2, 21)


@pytest.mark.parametrize("case", ["silence", "one sample", "tiny", "huge", "denormal"])
def test_edge_audio_gives_finite_embeddings(model, case) -> None:
    window = edge_windows(40000, 32000)[case]  # 1.25 s
    audio = torch.from_numpy(np.stack([window[:1], -window[:1]] if case == "one sample" else [window, -window]))
    scene = hear_infersuite.get_scene_embeddings(audio, model)
    embeddings, _ = hear_infersuite.get_timestamp_embeddings(audio, model)
    assert torch.isfinite(scene).all() and torch.isfinite(embeddings).all()


def test_gain_does_not_change_the_embedding_from_1e_minus_30_to_1e20(model) -> None:
    tone = edge_windows(32000, 32000)["tone"]
    scenes = [hear_infersuite.get_scene_embeddings(torch.from_numpy(gain * tone[None]), model)
              for gain in (1e-30, 1.0, 1e20)]
    for scene in scenes:
        torch.testing.assert_close(scene, scenes[1], atol=1e-4, rtol=0)


def test_the_callers_tensor_and_array_are_never_written(model) -> None:
    """Denormal samples are flushed to zero on the way in, in a copy: a CPU tensor's .numpy() shares its
    memory, so flushing that in place zeroed the caller's own tensor."""
    samples = np.full((1, 32000), 1e-41, np.float32)  # subnormal in float32
    samples[0, ::2] = 0.25
    audio = torch.from_numpy(samples.copy())
    hear_infersuite.get_scene_embeddings(audio, model)
    hear_infersuite.get_timestamp_embeddings(audio, model)
    assert np.array_equal(audio.numpy(), samples)  # the 1e-41 samples are still there
    array = samples.copy()
    hear_infersuite.get_scene_embeddings(array, model)
    assert np.array_equal(array, samples)


def test_bad_shapes_values_and_paths_are_rejected(model, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"n_sounds, n_samples"):
        hear_infersuite.get_scene_embeddings(torch.zeros(100), model)
    with pytest.raises(ValueError, match="NaN/Inf"):
        hear_infersuite.get_scene_embeddings(torch.full((1, 100), float("nan")), model)
    with pytest.raises(FileNotFoundError):
        hear_infersuite.load_model(str(tmp_path))
