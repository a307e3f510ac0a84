"""Deep Interest Network: Dice, local activation, shapes, metadata, regularisation."""

from __future__ import annotations

import pytest
import torch

from models.ctr.din import DeepInterestNetwork, Dice, DinConfig, LocalActivationUnit, mini_batch_aware_l2


def _masked_moments(x, mask):
    flat, keep = x.reshape(-1, x.shape[-1]), mask.reshape(-1) > 0
    valid = flat[keep]
    return valid.mean(0), valid.var(0, unbiased=False), valid.var(0, unbiased=True)


def test_dice_uses_masked_batch_statistics_in_training():
    torch.manual_seed(0)
    dice = Dice(4, momentum=0.1)
    with torch.no_grad():
        dice.alpha.copy_(torch.tensor([0.0, 0.1, -0.2, 0.5]))
    x = torch.randn(3, 5, 4) * 2 + 1
    mask = (torch.rand(3, 5) > 0.4).float()
    mean, var, unbiased = _masked_moments(x, mask)
    p = torch.sigmoid((x - mean) / torch.sqrt(var + 1e-8))
    expected = p * x + (1 - p) * dice.alpha * x  # paper eq. 6
    torch.testing.assert_close(dice.train()(x, mask), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dice.running_mean, 0.1 * mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(dice.running_var, 0.9 + 0.1 * unbiased, atol=1e-6, rtol=1e-5)


def test_dice_ignores_padded_positions_for_statistics():
    dice = Dice(3).train()
    x = torch.randn(2, 6, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]]).float()
    garbage = x.clone()
    garbage[mask == 0] = 1e3
    keep = mask > 0
    torch.testing.assert_close(dice(x, mask)[keep], Dice(3).train()(garbage, mask)[keep])


def test_dice_uses_running_statistics_in_eval():
    dice = Dice(2).eval()
    dice.running_mean.copy_(torch.tensor([1.0, -2.0]))
    dice.running_var.copy_(torch.tensor([4.0, 0.25]))
    with torch.no_grad():
        dice.alpha.fill_(0.3)
    x = torch.tensor([[[3.0, -2.0], [1.0, 0.0]]])  # (1, 2, 2)
    p = torch.sigmoid((x - dice.running_mean) / torch.sqrt(dice.running_var + 1e-8))
    out = dice(x)
    torch.testing.assert_close(out, p * x + (1 - p) * 0.3 * x)
    assert out[0, 0, 1].item() == pytest.approx(-2.0 * (0.5 + 0.5 * 0.3))  # s = E[s]: p = 1/2
    before = dice.running_mean.clone()
    dice(torch.randn(4, 3, 2))
    torch.testing.assert_close(dice.running_mean, before)  # eval never updates the buffers


def test_split_weight_attention_equals_explicit_concat():
    torch.manual_seed(1)
    unit = LocalActivationUnit(dim=5, hidden=7, activation="prelu")
    behaviours, ads = torch.randn(2, 4, 5), torch.randn(2, 3, 5)
    mask = torch.ones(2, 3, 4)
    e = behaviours.unsqueeze(1).expand(2, 3, 4, 5)
    a = ads.unsqueeze(2).expand(2, 3, 4, 5)
    hidden = unit.act(unit.fc(torch.cat([e, a, e - a, e * a], -1)))
    torch.testing.assert_close(unit(behaviours, ads, mask), unit.out(hidden).squeeze(-1))


@pytest.mark.parametrize("variant", ["base", "din_prelu", "din_dice"])
@pytest.mark.parametrize(("batch", "history", "candidates"), [(1, 1, 1), (2, 7, 3), (5, 13, 11)])
def test_forward_shapes_for_dynamic_sizes(make_din, variant, batch, history, candidates):
    model = make_din(variant).eval()
    inputs = model.example_inputs(batch, history, candidates)
    probability, weights = model(*inputs)
    assert probability.shape == (batch, candidates)
    assert weights.shape == (batch, candidates, history)
    assert ((probability > 0) & (probability < 1)).all()


def test_example_inputs_have_valid_ids_and_some_padding(make_din):
    model = make_din()
    items, cats, mask, cand_items, cand_cats = model.example_inputs(4, 6, 3)
    assert mask.sum(1).min() >= 1 and (mask == 0).any()
    assert (items[mask > 0] >= 1).all() and (items[mask == 0] == 0).all()
    assert items.max() <= model.config.n_items and cand_cats.max() <= model.config.n_categories
    assert cand_items.min() >= 1 and cats[mask > 0].min() >= 1
    assert tuple(model.dynamic_shapes()) == model.input_names
    assert model.output_names == ("click_probability", "activation_weights")


@pytest.mark.parametrize("variant", ["din_prelu", "din_dice"])
def test_activation_weights_are_zero_on_padding_and_not_normalised(make_din, variant):
    model = make_din(variant).eval()
    items, cats, mask, cand_items, cand_cats = model.example_inputs(1, 6, 2)  # 1 valid behaviour
    _, weights = model(items, cats, mask, cand_items, cand_cats)
    assert (weights[..., 1:] == 0).all()
    doubled = items.clone(), cats.clone(), mask.clone()
    doubled[0][0, 1], doubled[1][0, 1], doubled[2][0, 1] = items[0, 0], cats[0, 0], 1.0
    _, weights_doubled = model(doubled[0], doubled[1], doubled[2], cand_items, cand_cats)
    # a repeated behaviour adds its own weight again: a softmax would keep the sum at 1
    torch.testing.assert_close(weights_doubled.sum(-1), 2 * weights.sum(-1))
    assert not torch.allclose(weights.sum(-1), torch.ones(1, 2))


@pytest.mark.parametrize("variant", ["base", "din_dice"])
def test_padded_history_slots_do_not_change_scores(make_din, variant):
    model = make_din(variant).eval()
    items, cats, mask, cand_items, cand_cats = model.example_inputs(3, 5, 4)
    noisy_items = torch.where(mask > 0, items, torch.full_like(items, 7))
    noisy_cats = torch.where(mask > 0, cats, torch.full_like(cats, 2))
    clean, _ = model(items, cats, mask, cand_items, cand_cats)
    noisy, _ = model(noisy_items, noisy_cats, mask, cand_items, cand_cats)
    torch.testing.assert_close(noisy, clean)


def test_base_model_weights_are_the_mask(make_din):
    model = make_din("base").eval()
    inputs = model.example_inputs(3, 5, 4)
    _, weights = model(*inputs)
    torch.testing.assert_close(weights, inputs[2].unsqueeze(1).expand(3, 4, 5))
    assert model.attention is None


def test_config_round_trip_rebuilds_the_same_model(make_din):
    model = make_din("din_dice").eval()
    clone = type(model).from_config(model.to_dict())
    clone.load_state_dict(model.state_dict())
    inputs = model.example_inputs(2, 4, 3)
    torch.testing.assert_close(clone.eval()(*inputs)[0], model(*inputs)[0])
    assert clone.config == model.config


def test_exported_program_keeps_batch_history_and_candidates_dynamic(make_din):
    model = make_din("din_dice").eval()
    program = torch.export.export(model, model.example_inputs(), dynamic_shapes=model.dynamic_shapes())
    inputs = model.example_inputs(4, 9, 6, generator=torch.Generator().manual_seed(0))
    exported, _ = program.module()(*inputs)
    torch.testing.assert_close(exported, model(*inputs)[0])


def test_mini_batch_aware_l2_touches_only_rows_in_the_batch(make_din):
    model = make_din("base")
    frequencies = {
        "item": torch.arange(model.config.n_items + 1).float(),
        "category": torch.full((model.config.n_categories + 1,), 2.0),
    }
    ids = {"item": torch.tensor([[3, 5, 0], [5, 9, 0]]), "category": torch.tensor([1, 1, 4])}
    penalty = mini_batch_aware_l2(model, ids, frequencies, lam=0.5)
    items, cats = model.item_embedding.weight, model.category_embedding.weight
    expected = 0.5 * (
        sum(items[j].square().sum() / j for j in (3, 5, 9)) + sum(cats[j].square().sum() / 2.0 for j in (1, 4))
    )
    torch.testing.assert_close(penalty, expected)
    penalty.backward()
    touched = items.grad.abs().sum(1).nonzero().flatten().tolist()
    assert touched == [3, 5, 9]
    assert cats.grad.abs().sum(1).nonzero().flatten().tolist() == [1, 4]


@pytest.mark.parametrize("activation", ["dice", "prelu"])
@pytest.mark.parametrize("pooling", ["attention", "sum"])
def test_rows_layout_scores_exactly_as_the_training_layout(pooling: str, activation: str) -> None:
    """The served rows layout (one row per candidate, with its user's index) is the same function as
    the (B, N) grid the model trains on: every real candidate gets the same probability and weights."""
    from models.ctr.din_rows import DinRows, grid_to_rows

    torch.manual_seed(0)
    din = DeepInterestNetwork(DinConfig(n_items=50, n_categories=6, pooling=pooling, activation=activation)).eval()
    for module in din.modules():  # non-trivial running moments, so Dice's eval path is exercised
        if hasattr(module, "running_var"):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    grid = din.example_inputs(4, 9, 5, generator=torch.Generator().manual_seed(1))
    grid[3][2, 3:] = 0  # user 2 has only 3 real candidates (padding id 0)
    with torch.no_grad():
        probability, weights = din(*grid)  # (B, N), (B, N, T)
        rows_probability, rows_weights = DinRows(din)(*grid_to_rows(grid))  # (R,), (R, T)
    keep = grid[3] > 0
    assert rows_probability.shape == (int(keep.sum()),)
    torch.testing.assert_close(rows_probability, probability[keep], rtol=0, atol=1e-6)
    torch.testing.assert_close(rows_weights, weights[keep], rtol=0, atol=1e-6)
