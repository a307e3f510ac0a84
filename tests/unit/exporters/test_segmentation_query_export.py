"""The query-decoder (Mask2Former) head exports as the same staged graphs the segmentation service
runs: same stage names, inputs and outputs as the FPN head, and the staged onnxruntime loop
reproduces torch's masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from exporters.segmentation import StagedOnnx, export_segmentation, holdout_images, stage_names
from models.segmentation.data import SceneConfig
from models.segmentation.eco_m2f import EcoM2FConfig
from models.segmentation.train import TrainConfig, load_checkpoint, run


@pytest.mark.slow  # a torch export or training of several seconds: not in `make test-fast`
@pytest.mark.filterwarnings("ignore")
def test_a_query_head_model_exports_as_staged_graphs_with_the_fpn_heads_interface(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    model_cfg = EcoM2FConfig(n_layers=2, d_model=32, n_heads=2, ffn_dim=64, widths=(16, 24, 32), head_dim=16,
                             gate_hidden=16, head="query", n_queries=6, decoder_layers=2)
    run(SceneConfig(n_images=60, seed=5), model_cfg, TrainConfig(epochs=1, batch_size=16, gate_epochs=2),
        beta=0.01, out=tmp_path, progress=False)
    backbone = export_segmentation(tmp_path / "eco_m2f.pt", tmp_path / "repo", holdout=4)
    meta = json.loads((backbone / "meta.json").read_text())
    assert meta["end_to_end_parity"]["min_mask_pixel_agreement"] >= 0.999
    names = stage_names(2)
    staged = StagedOnnx.from_repository(tmp_path / "repo", n_layers=2, first_exit=2)
    assert [i.name for i in staged.head.get_inputs()] == ["tokens", "pixel_features"]
    assert [o.name for o in staged.head.get_outputs()] == ["logits"]
    model, checkpoint = load_checkpoint(tmp_path / "eco_m2f.pt")
    image, _ = holdout_images(checkpoint, 4)
    logits, exits = staged.run(image)
    with torch.no_grad():
        want, want_exits = model(torch.from_numpy(image))
    assert exits.tolist() == want_exits.tolist() and np.isfinite(logits).all()
    assert np.mean(logits.argmax(1) == want.numpy().argmax(1)) >= 0.999
    assert (tmp_path / "repo" / names["head"] / "1" / "model.onnx").is_file()
