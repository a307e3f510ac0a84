"""The regression gate (per-exit gains of the dataset-mIoU share, exit cost folded into its bias)
exports in the same BackboneGateStage graph: onnxruntime's exit logits equal torch's, and the staged
loop picks torch's exits (export_segmentation fails on any disagreement). A gate that reads the
tokens after layer 2 exports as its own stage, run by the staged loop after that layer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from exporters.segmentation import StagedOnnx, export_segmentation, holdout_images, stage_names
from models.segmentation.data import SceneConfig
from models.segmentation.eco_m2f import EcoM2FConfig
from models.segmentation.train import TrainConfig, load_checkpoint, run


def _train_tiny(out: Path, gate_pool: int, gate_after_layer: int) -> None:
    """A 3-layer parent (1 epoch) with a regression gate on dataset-mIoU share gains, in `out`."""
    torch.set_num_threads(1)
    model_cfg = EcoM2FConfig(n_layers=3, d_model=32, n_heads=2, ffn_dim=64, widths=(16, 24, 32), head_dim=16,
                             gate_hidden=16, gate_pool=gate_pool, gate_after_layer=gate_after_layer)
    train_cfg = TrainConfig(epochs=1, batch_size=16, gate_epochs=5, gate_quality="dataset_miou", gate_target="gain")
    run(SceneConfig(n_images=60, seed=5), model_cfg, train_cfg, beta=0.005, out=out, progress=False)


@pytest.mark.slow  # a torch export or training of several seconds: not in `make test-fast`
@pytest.mark.filterwarnings("ignore")
def test_a_finer_pooled_regression_gate_exports_with_torch_parity(tmp_path: Path) -> None:
    _train_tiny(tmp_path, gate_pool=4, gate_after_layer=0)
    backbone = export_segmentation(tmp_path / "eco_m2f.pt", tmp_path / "repo", holdout=6)
    meta = json.loads((backbone / "meta.json").read_text())
    assert meta["end_to_end_parity"]["min_mask_pixel_agreement"] >= 0.999
    model, checkpoint = load_checkpoint(tmp_path / "eco_m2f.pt")
    image, _ = holdout_images(checkpoint, 6)
    session = ort.InferenceSession(str(tmp_path / "repo" / stage_names(3)["backbone"] / "1" / "model.onnx"))
    got = session.run(["exit_logits"], {"image": image})[0]
    with torch.no_grad():
        want = model.gate(model.forward_features(torch.from_numpy(image))[0]).numpy()
    assert got.shape == (6, 2) and np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=1e-4)


@pytest.mark.slow  # a torch export or training of several seconds: not in `make test-fast`
@pytest.mark.filterwarnings("ignore")
def test_a_gate_after_layer_2_exports_as_its_own_stage_and_the_staged_loop_picks_torchs_exits(tmp_path: Path) -> None:
    _train_tiny(tmp_path, gate_pool=1, gate_after_layer=2)
    model, checkpoint = load_checkpoint(tmp_path / "eco_m2f.pt")
    image, _ = holdout_images(checkpoint, 8)
    with torch.no_grad():  # shift exit 3's logit so that about half of the held-out images go deeper
        raw = model.gate(model.gate_tokens(model.forward_features(torch.from_numpy(image))[0]))
        model.gate.mlp[-1].bias[1] -= (raw[:, 1] - raw[:, 0]).median() + 1e-6
    torch.save({**checkpoint, "state_dict": model.state_dict()}, tmp_path / "eco_m2f.pt")
    backbone = export_segmentation(tmp_path / "eco_m2f.pt", tmp_path / "repo", holdout=8)  # fails on exit misses
    pipeline = json.loads((backbone / "meta.json").read_text())["pipeline"]
    assert pipeline["gate_after_layer"] == 2 and pipeline["stages"]["gate"] == "segmentation-gate-fp32"
    staged = StagedOnnx.from_repository(tmp_path / "repo", n_layers=3, first_exit=2)
    assert [o.name for o in staged.backbone.get_outputs()] == ["tokens", "pixel_features"]
    logits, exits = staged.run(image)
    with torch.no_grad():
        want, want_exits = model(torch.from_numpy(image))
    assert exits.tolist() == want_exits.tolist() and set(exits.tolist()) == {2, 3}
    assert np.mean(logits.argmax(1) == want.numpy().argmax(1)) >= 0.999
