"""The one log-mel front end: matches an independent numpy STFT, crops consistently (what
training relies on), is gain invariant, and is what the exported graphs compute."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.audio.frontend import FrontEndConfig, LogMel, log_mel_reference, mel_filterbank


def _audio(samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 32000
    return (0.3 * np.sin(2 * np.pi * 1234 * t) + 0.05 * rng.standard_normal(samples)).astype(np.float32)[None]


def test_matches_the_numpy_fft_reference() -> None:
    audio = np.concatenate([_audio(32000), 0.01 * _audio(32000, seed=1)])
    got = LogMel()(torch.from_numpy(audio)).numpy()
    assert got.shape == (2, 1, 128, 98)
    np.testing.assert_allclose(got, log_mel_reference(audio), atol=1e-4)


def test_the_fft_path_gives_the_exported_path_s_values() -> None:
    audio = np.concatenate([_audio(32000), 0.01 * _audio(32000, seed=1), np.zeros((1, 32000), np.float32)])
    front = LogMel()
    with torch.no_grad():
        np.testing.assert_allclose(front.fft(torch.from_numpy(audio)).numpy(), front(torch.from_numpy(audio)).numpy(),
                                   atol=1e-3)
        np.testing.assert_allclose(front.fft(torch.from_numpy(audio)).numpy(), log_mel_reference(audio), atol=1e-4)


def test_a_crop_at_a_hop_multiple_equals_the_clip_spectrogram_crop() -> None:
    clip = _audio(64000)
    front = FrontEndConfig()
    whole = LogMel(replace(front, window_samples=64000))(torch.from_numpy(clip))
    # per-window peak normalisation differs between clip and crop: compare up to that offset
    crop = LogMel()(torch.from_numpy(clip[:, 320 * 37:320 * 37 + 32000]))
    part = whole[..., 37:37 + front.frames]
    np.testing.assert_allclose((crop - crop.amax()).numpy(), (part - part.amax()).numpy(), atol=1e-4)


def test_gain_invariant() -> None:
    audio = _audio(32000)
    loud, quiet = LogMel()(torch.from_numpy(audio)), LogMel()(torch.from_numpy(audio * 1e-3))
    np.testing.assert_allclose(loud.numpy(), quiet.numpy(), atol=1e-3)


def test_a_tone_lights_the_mel_bin_of_its_frequency() -> None:
    config = FrontEndConfig()
    mel = LogMel()(torch.from_numpy(_audio(32000))).numpy()[0, 0].mean(1)  # (128,)
    filters = mel_filterbank(config)
    tone_bin = round(1234 / (config.sample_rate / config.n_fft))
    assert int(np.argmax(mel)) == int(np.argmax(filters[tone_bin]))


EDGES = {
    "silence": np.zeros(32000),
    "one sample": np.eye(1, 32000)[0] * 0.5,
    "tiny": 1e-30 * np.sin(np.arange(32000) / 7.0),
    "huge": 1e20 * np.sin(np.arange(32000) / 7.0),
    "denormal": np.full(32000, 1e-44),
}


@pytest.mark.parametrize("case", sorted(EDGES))
def test_edge_inputs_give_finite_log_mels_in_torch_and_the_reference(case) -> None:
    audio = EDGES[case].astype(np.float32)[None]
    got = LogMel()(torch.from_numpy(audio)).numpy()
    assert np.isfinite(got).all() and np.isfinite(log_mel_reference(audio)).all()


def test_the_log_guard_survives_export_where_an_added_epsilon_does_not(tmp_path) -> None:
    """onnxscript's optimiser folds `x + 1e-12` away; the clamp stays, so silence stays finite."""
    from exporters.onnx_export import export_onnx, reference_session

    class Guarded(torch.nn.Module):
        input_names, output_names = ("x",), ("y",)

        def __init__(self, clamp: bool):
            super().__init__()
            self.clamp = clamp

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log10(x.clamp(min=1e-12) if self.clamp else x + 1e-12)

        def dynamic_shapes(self) -> dict:
            return {"x": {0: torch.export.Dim("batch", min=1, max=8)}}

        def example_inputs(self) -> tuple[torch.Tensor]:
            return (torch.rand(2, 4),)

    silence = {"x": np.zeros((2, 4), np.float32)}
    for clamp, finite in ((True, True), (False, False)):
        path = export_onnx(Guarded(clamp), tmp_path / f"clamp{clamp}.onnx")
        assert np.isfinite(reference_session(path).run(None, silence)[0]).all() == finite
