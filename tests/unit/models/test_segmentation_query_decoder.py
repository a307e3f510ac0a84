"""The Mask2Former query head: Hungarian matching, the set loss, semantic inference, masked
attention, local encoder attention, and the head as an exported stage (parity with onnxruntime)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from exporters.onnx_export import check_parity, export_onnx
from models.segmentation.eco_m2f import EcoM2F, EcoM2FConfig, HeadStage, attention_bias
from models.segmentation.matching import decoder_loss, hungarian, sampled_targets
from models.segmentation.query_decoder import QueryDecoder, semantic_logits

TINY_QUERY = EcoM2FConfig(n_layers=3, d_model=32, n_heads=2, ffn_dim=64, widths=(16, 24, 32), head_dim=16,
                          head="query", n_queries=6, decoder_layers=2)


def test_hungarian_matching_pairs_each_class_present_with_the_query_that_predicts_it() -> None:
    # 4 points, 5 classes; class 3 covers points 0-1, class 1 points 2-3; the others are absent
    targets = torch.zeros(1, 5, 4)
    targets[0, 3, :2], targets[0, 1, 2:] = 1.0, 1.0
    present = torch.tensor([[False, True, False, True, False]])
    class_logits = torch.full((1, 3, 6), -5.0)
    class_logits[0, 2, 3], class_logits[0, 0, 1] = 5.0, 5.0  # query 2 says class 3, query 0 says class 1
    mask_points = torch.tensor([[[-9.0, -9.0, 9.0, 9.0], [0.0, 0.0, 0.0, 0.0], [9.0, 9.0, -9.0, -9.0]]])
    ((rows, classes),) = hungarian(class_logits, mask_points, present, targets)
    assert dict(zip(classes.tolist(), rows.tolist(), strict=True)) == {3: 2, 1: 0}


def test_sampled_targets_read_the_class_at_each_point() -> None:
    labels = torch.tensor([[[0, 0], [2, 2]]])  # (1, 2, 2): bottom row is class 2
    points = torch.tensor([[[0.25, 0.25], [0.75, 0.75], [0.25, 0.9]]])  # (x, y)
    targets = sampled_targets(labels, points, n_classes=3)  # (1, 3, 3)
    assert targets[0].argmax(0).tolist() == [0, 2, 2] and targets.sum().item() == 3


def test_semantic_inference_is_the_einsum_of_class_probabilities_and_masks() -> None:
    class_logits = torch.full((1, 2, 4), -20.0)  # 3 classes + no object
    class_logits[0, 0, 1], class_logits[0, 1, 2] = 20.0, 20.0
    masks = torch.full((1, 2, 2, 2), -20.0)
    masks[0, 0, 0], masks[0, 1, 1] = 20.0, 20.0  # query 0 covers the top row, query 1 the bottom row
    scores = semantic_logits(class_logits, masks, size=2)
    assert scores.shape == (1, 3, 2, 2)
    np.testing.assert_array_equal(scores.argmax(1)[0].numpy(), [[1, 1], [2, 2]])


def test_a_query_with_an_empty_mask_attends_everywhere_and_others_only_inside_their_mask() -> None:
    masks = torch.full((1, 2, 4, 4), -10.0)
    masks[0, 1, :2, :2] = 10.0  # query 1 covers the top-left quarter; query 0 covers nothing
    bias = QueryDecoder.attention_bias(masks, side=2)  # (1, 2, 4)
    assert bias[0, 0].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert bias[0, 1].tolist() == [0.0, -1e4, -1e4, -1e4]


def test_local_encoder_attention_reaches_only_tokens_within_the_radius() -> None:
    cfg = EcoM2FConfig(attention_radius=8.0)
    bias = attention_bias(cfg)  # (T, T); token 0 is the top-left stride-8 token, centre (4, 4)
    g8, _ = cfg.token_grids
    reached = set(torch.nonzero(bias[0] == 0).flatten().tolist())
    assert reached == {0, 1, g8, g8 + 1, g8 * g8}  # itself, 3 stride-8 neighbours, the stride-16 token at (8, 8)
    assert torch.count_nonzero(attention_bias(EcoM2FConfig(attention_radius=0))) == 0  # radius 0: global


def test_the_set_loss_falls_when_the_query_head_trains_on_one_batch() -> None:
    torch.manual_seed(0)
    model = EcoM2F(replace(TINY_QUERY, image_size=32, n_layers=2, decoder_layers=1))  # one exit, small
    image, labels = torch.rand(2, 3, 32, 32), torch.zeros(2, 32, 32, dtype=torch.long)
    labels[:, 8:24, 8:24] = 2
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = model.exit_losses(image, labels).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0]
    tokens, pixel_features = model.forward_features(image)
    assert torch.isfinite(decoder_loss(model.head.query.predictions(tokens, pixel_features, model.positions),
                                       labels, torch.Generator().manual_seed(1)))


@pytest.mark.slow  # a torch export or training of several seconds: not in `make test-fast`
@pytest.mark.filterwarnings("ignore")
def test_the_query_head_exports_as_the_same_head_stage_with_parity(tmp_path: Path) -> None:
    torch.manual_seed(0)
    stage = HeadStage(EcoM2F(TINY_QUERY).eval())
    path = export_onnx(stage, tmp_path / "head.onnx")
    assert check_parity(stage, path, [stage.example_inputs(b) for b in (1, 3)], atol=1e-4) < 1e-4
