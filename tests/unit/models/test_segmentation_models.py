"""ECO-M2F family: scenes, metrics, the derived dataset rule, the early-exit model and its stages."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from models.segmentation.data import SceneConfig, make_scene, make_scenes, shape_mask
from models.segmentation.eco_m2f import (
    BackboneGateStage,
    EcoM2F,
    EcoM2FConfig,
    EncoderLayerStage,
    GateStage,
    HeadStage,
    gflops_at_exit,
    stage_gflops,
)
from models.segmentation.gating import (
    ExitTable,
    derived_targets,
    fold_exit_cost,
    gate_choice,
    ideal_exits,
    marginal_quality,
    train_gate,
)
from models.segmentation.metrics import confusion, mean_iou, per_image_miou

# The gate on the encoder's input tokens, pooled 2 x 2 (the paper's placement; the default reads layer 2's).
SMALL = EcoM2FConfig(n_layers=3, d_model=32, n_heads=2, ffn_dim=64, widths=(16, 24, 32), head_dim=16, gate_pool=2,
                     gate_after_layer=0)


def test_scenes_are_reproducible_from_the_seed_and_split_disjointly() -> None:
    a, b = make_scenes(SceneConfig(n_images=40, seed=7)), make_scenes(SceneConfig(n_images=40, seed=7))
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
    parts = np.concatenate([a.train, a.valid, a.test])
    assert sorted(parts.tolist()) == list(range(40))


def test_an_easy_scene_is_one_large_shape_and_front_clutter_is_labelled_background() -> None:
    cfg = SceneConfig()
    image, labels = make_scene(cfg, 0.0, np.random.default_rng(0))
    assert image.shape == (64, 64, 3) and labels.shape == (64, 64)
    classes = set(np.unique(labels).tolist()) - {0}
    assert len(classes) == 1  # difficulty 0: one object, no clutter
    assert int((labels == classes.pop()).sum()) > 100
    _, hard_labels = make_scene(cfg, 1.0, np.random.default_rng(0))
    assert len(set(np.unique(hard_labels).tolist()) - {0}) >= 2


def test_shape_masks_have_the_expected_areas() -> None:
    r = 10.0
    assert abs(shape_mask(1, 64, 32, 32, r, 0.0).sum() - np.pi * r * r) < 0.03 * np.pi * r * r
    assert abs(shape_mask(2, 64, 32, 32, r, 0.0).sum() - (1.6 * r) ** 2) < 0.05 * (1.6 * r) ** 2
    assert shape_mask(3, 64, 32, 32, r, 0.0).sum() < shape_mask(1, 64, 32, 32, r, 0.0).sum() / 2


def test_hard_scenes_have_more_objects_and_more_noise_than_easy_ones() -> None:
    cfg, rng = SceneConfig(), np.random.default_rng(1)
    easy = [make_scene(cfg, 0.05, rng) for _ in range(10)]
    hard = [make_scene(cfg, 0.95, rng) for _ in range(10)]

    def roughness(image: np.ndarray) -> float:  # mean absolute horizontal neighbour difference
        return float(np.abs(np.diff(image.astype(float), axis=1)).mean())

    assert np.mean([len(np.unique(lab)) for _, lab in hard]) > np.mean([len(np.unique(lab)) for _, lab in easy])
    assert np.mean([roughness(im) for im, _ in hard]) > 2 * np.mean([roughness(im) for im, _ in easy])


def test_miou_on_hand_made_masks() -> None:
    labels = np.array([[[0, 0, 1, 1]]])
    predicted = np.array([[[0, 1, 1, 1]]])
    # class 0: inter 1 / union 2; class 1: inter 2 / union 3
    assert mean_iou(confusion(predicted, labels, 3)) == pytest.approx((0.5 + 2 / 3) / 2)
    assert per_image_miou(predicted, labels, 3)[0] == pytest.approx((0.5 + 2 / 3) / 2)
    assert per_image_miou(labels, labels, 3)[0] == 1.0


def test_ideal_exit_trades_quality_against_layers_with_beta() -> None:
    exits = [2, 3, 4]
    quality = np.array([[0.50, 0.60, 0.61],   # layer 3 buys 0.10, layer 4 only 0.01
                        [0.90, 0.90, 0.90],   # saturated at the first exit
                        [0.10, 0.30, 0.60]])  # keeps improving
    np.testing.assert_array_equal(ideal_exits(quality, exits, 0.0), [2, 0, 2])
    np.testing.assert_array_equal(ideal_exits(quality, exits, 0.05), [1, 0, 2])
    np.testing.assert_array_equal(ideal_exits(quality, exits, 0.5), [0, 0, 0])


def test_exit_table_miou_combines_per_image_confusions_at_the_chosen_exits() -> None:
    eye, wrong = np.array([[5, 0], [0, 5]]), np.array([[0, 5], [5, 0]])
    confusions = np.stack([np.stack([wrong, eye]), np.stack([eye, wrong])])  # (N=2, E=2, 2, 2)
    table = ExitTable([2, 3], np.zeros((2, 2)), confusions, np.zeros((2, 4)))
    assert table.miou(np.array([1, 0])) == 1.0
    assert table.miou(np.array([0, 1])) == 0.0
    np.testing.assert_array_equal(table.layers(np.array([1, 0])), [3, 2])


def test_every_exit_and_the_gate_come_from_one_shared_head() -> None:
    torch.manual_seed(0)
    model = EcoM2F(SMALL).eval()
    image = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        exits = model.forward_exits(image)
        assert len(exits) == len(SMALL.exits) == 2 and exits[0].shape == (3, 5, 64, 64)
        for k, logits in zip(SMALL.exits, exits, strict=True):
            torch.testing.assert_close(model(image, k)[0], logits)
        gated, chosen = model(image)
    assert set(chosen.tolist()) <= set(SMALL.exits)
    for i, k in enumerate(chosen.tolist()):
        torch.testing.assert_close(gated[i], exits[k - SMALL.first_exit][i])


def test_stages_compose_to_the_model() -> None:
    torch.manual_seed(0)
    model = EcoM2F(SMALL).eval()
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        tokens, pixel_features, exit_logits = BackboneGateStage(model)(image)
        assert exit_logits.shape == (2, len(SMALL.exits))
        for k in (1, 2):
            tokens = EncoderLayerStage(model, k)(tokens)
        torch.testing.assert_close(HeadStage(model)(tokens, pixel_features), model(image, 2)[0])


def test_gflops_count_the_encoder_analytically_and_grow_with_depth() -> None:
    cfg = EcoM2FConfig()
    costs = stage_gflops(EcoM2F(cfg))
    t, d, f = cfg.n_tokens, cfg.d_model, cfg.ffn_dim
    analytic = 2 * t * (3 * d * d + d * d + 2 * d * f) + 2 * 2 * t * t * d  # linears + QK^T + AV
    assert costs["encoder_layer"] == pytest.approx(analytic / 1e9)
    totals = [gflops_at_exit(costs, k) for k in cfg.exits]
    assert np.all(np.diff(totals) == pytest.approx(costs["encoder_layer"]))
    assert cfg.n_layers * costs["encoder_layer"] > costs["backbone_gate"] + costs["head"]  # encoder dominates


def test_gate_learns_a_separable_derived_dataset() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 2 * 4 * SMALL.d_model)).astype(np.float32)
    targets = (features[:, 0] > 0).astype(np.int64)  # exit column from one feature
    gate = train_gate(EcoM2F(SMALL).gate, features, targets, epochs=30)
    with torch.no_grad():
        predicted = gate.mlp(torch.from_numpy(features)).argmax(1).numpy()
    assert np.mean(predicted == targets) > 0.9


def _random_confusions(rng: np.random.Generator, n: int, e: int, c: int) -> np.ndarray:
    return rng.integers(0, 50, size=(n, e, c, c)).astype(np.int32)


def test_marginal_quality_is_each_images_first_order_share_of_the_dataset_miou() -> None:
    confusions = _random_confusions(np.random.default_rng(0), 6, 3, 4)
    confusions[2, 1, 3, :] = 0  # image 2 at exit 1 never sees class 3: a NaN-free, absent-class row
    q = marginal_quality(confusions)
    total = confusions[:, 0].sum(0)
    for i, k in [(0, 0), (2, 1), (5, 2)]:
        moved = total - confusions[i, 0] + confusions[i, k]
        assert q[i, k] == pytest.approx(6 * (mean_iou(moved) - mean_iou(total)))
    np.testing.assert_array_equal(q[:, 0], 0.0)  # the reference exit moves nothing
    assert np.isfinite(q).all()


def test_derived_targets_are_k_star_or_per_exit_gains_and_unknown_names_are_refused() -> None:
    rng = np.random.default_rng(1)
    quality = rng.uniform(0, 1, (5, 3))
    table = ExitTable([2, 3, 4], quality, _random_confusions(rng, 5, 3, 3), np.zeros((5, 1)))
    np.testing.assert_array_equal(derived_targets(table, 0.05), ideal_exits(quality, [2, 3, 4], 0.05))
    gains = derived_targets(table, 0.05, target="gain")
    np.testing.assert_allclose(gains, quality - quality[:, :1])
    shares = derived_targets(table, 0.0, quality="dataset_miou", target="gain")
    np.testing.assert_allclose(shares, marginal_quality(table.confusions))
    with pytest.raises(ValueError, match="gate target 'soft' is unknown"):
        derived_targets(table, 0.0, target="soft")
    with pytest.raises(ValueError, match="gate quality 'pq' is unknown"):
        derived_targets(table, 0.0, quality="pq")


def test_a_regression_gate_learns_gains_and_its_folded_cost_picks_argmax_of_gain_minus_beta_k() -> None:
    rng = np.random.default_rng(2)
    features = rng.normal(size=(400, 2 * 4 * SMALL.d_model)).astype(np.float32)
    gains = np.stack([np.zeros(400), 0.05 * features[:, 0]], 1).astype(np.float32)  # SMALL: exits 2 and 3
    gate = train_gate(EcoM2F(SMALL).gate, features, gains, epochs=40)
    with torch.no_grad():
        raw = gate.mlp(torch.from_numpy(features)).numpy()
    assert np.corrcoef(raw[:, 1], gains[:, 1])[0, 1] > 0.9
    exits, beta = SMALL.exits, 0.03
    folded = fold_exit_cost(copy.deepcopy(gate), exits, beta)
    want = np.argmax(raw - beta * (np.asarray(exits) - exits[0]), axis=1)
    np.testing.assert_array_equal(gate_choice(folded, features), want)
    assert 0.55 < np.mean(want == 0) < 0.9  # the cost keeps images with a small predicted gain at exit 2
    assert (gate_choice(fold_exit_cost(copy.deepcopy(gate), exits, 10.0), features) == 0).all()
    with pytest.raises(ValueError, match="3 gain columns for a gate of 2 exits"):
        train_gate(gate, features, np.zeros((400, 3), np.float32), epochs=1)


def test_a_gate_after_layer_2_reads_those_tokens_and_its_stages_compose_to_the_model() -> None:
    torch.manual_seed(0)
    cfg = EcoM2FConfig(**{**SMALL.__dict__, "gate_after_layer": 2, "gate_pool": 1})
    model = EcoM2F(cfg).eval()
    image = torch.rand(8, 3, 64, 64)
    with torch.no_grad():  # shift exit 3's logit so that half of the images go deeper
        raw = model.gate(model.gate_tokens(model.forward_features(image)[0]))
        model.gate.mlp[-1].bias[1] -= (raw[:, 1] - raw[:, 0]).median() + 1e-6
        logits, exits = model(image)
        backbone = BackboneGateStage(model)(image)
        assert len(backbone) == 2  # tokens, pixel_features: no exit logits from the backbone
        tokens = backbone[0]
        for k in (1, 2):
            tokens = EncoderLayerStage(model, k)(tokens)
        want = GateStage(model)(tokens).argmax(1) + cfg.first_exit
        torch.testing.assert_close(model.gate(model.gate_tokens(backbone[0])), GateStage(model)(tokens))
    assert exits.tolist() == want.tolist() and set(exits.tolist()) == {2, 3}
    for i, k in enumerate(exits.tolist()):
        torch.testing.assert_close(logits[i], model(image[i:i + 1], k)[0][0])
    with pytest.raises(ValueError, match=r"gate_after_layer 3 must lie in 0\.\.first_exit"):
        EcoM2F(EcoM2FConfig(**{**SMALL.__dict__, "gate_after_layer": 3}))


def test_regating_keeps_every_parent_weight_and_fits_a_gate_of_the_new_design(tmp_path) -> None:
    from models.segmentation.train import TrainConfig, load_checkpoint, regate, run

    torch.set_num_threads(1)
    scenes = SceneConfig(n_images=40, seed=5)
    old = TrainConfig(epochs=1, batch_size=16, gate_epochs=2, gate_quality="image_miou", gate_target="ideal_exit")
    run(scenes, SMALL, old, beta=0.01, out=tmp_path / "parent", progress=False)
    new_gate = EcoM2FConfig(gate_pool=1, gate_after_layer=2, gate_hidden=8)
    regate(tmp_path / "parent" / "eco_m2f.pt", new_gate, TrainConfig(gate_epochs=2), beta=0.01,
           out=tmp_path / "regated")
    parent, _ = load_checkpoint(tmp_path / "parent" / "eco_m2f.pt")
    model, checkpoint = load_checkpoint(tmp_path / "regated" / "eco_m2f.pt")
    kept = {k: v for k, v in parent.state_dict().items() if not k.startswith("gate.")}
    assert kept and all(torch.equal(v, model.state_dict()[k]) for k, v in kept.items())
    assert (model.config.gate_after_layer, model.config.gate_pool, model.config.gate_hidden) == (2, 1, 8)
    assert model.config.d_model == SMALL.d_model and model.gate.mlp[1].in_features == 2 * SMALL.d_model
    trained = checkpoint["metrics"]["train_config"]
    assert trained["epochs"] == 1 and trained["gate_target"] == "gain" and trained["gate_quality"] == "dataset_miou"
    assert [row["policy"] for row in checkpoint["metrics"]["test"]][-1] == "gate"
