"""The DIN study's parts: Dice re-estimation, regularisers, early stopping, long-tail data, intervals."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.ctr.data import ClickDataConfig, iterate_batches, make_click_data
from models.ctr.din import DeepInterestNetwork, Dice, dice_modules, reestimate_dice_statistics
from models.ctr.metrics import gauc, paired_bootstrap, per_user_auc
from models.ctr.report import compare, reading
from models.ctr.train import INPUT_KEYS, TrainConfig, drop_ids, regularisation, train_variant


def test_reestimation_sets_running_moments_to_the_average_of_the_batch_moments(make_din, tiny_click_data):
    model = make_din("din_dice").eval()
    users, rng = tiny_click_data.train_users[:96], np.random.default_rng(0)
    batches = [tuple(b[k] for k in INPUT_KEYS) for b in iterate_batches(tiny_click_data, users, 32, rng)]
    first = dice_modules(model)[0]  # the activation unit's Dice: (B, N, T, H) masked positions
    inputs: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = first.register_forward_pre_hook(lambda m, args: inputs.append((args[0].detach(), args[1])))
    params = [p.clone() for p in model.parameters()]
    assert reestimate_dice_statistics(model, batches) == 3
    hook.remove()
    moments = []
    for x, mask in inputs:  # the masked mean and unbiased variance of each batch
        valid = x.reshape(-1, x.shape[-1])[mask.reshape(-1) > 0]
        moments.append((valid.mean(0), valid.var(0, unbiased=True)))
    assert len(inputs) == 3 and not model.training and first.averaged_batches == 0
    torch.testing.assert_close(first.running_mean, torch.stack([m for m, _ in moments]).mean(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(first.running_var, torch.stack([v for _, v in moments]).mean(0), atol=1e-5, rtol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters(), strict=True))  # no parameter moved


def test_reestimation_is_independent_of_the_stale_running_moments(make_din, tiny_click_data):
    users = tiny_click_data.train_users[:64]
    batches = [tuple(b[k] for k in INPUT_KEYS) for b in iterate_batches(tiny_click_data, users, 32)]
    a, b = make_din("din_dice"), make_din("din_dice")
    for dice in dice_modules(b):
        dice.running_mean.fill_(5.0)
        dice.running_var.fill_(9.0)
    reestimate_dice_statistics(a, batches)
    reestimate_dice_statistics(b, batches)
    for x, y in zip(dice_modules(a), dice_modules(b), strict=True):
        torch.testing.assert_close(x.running_mean, y.running_mean)
        torch.testing.assert_close(x.running_var, y.running_var)
    assert reestimate_dice_statistics(make_din("din_prelu"), batches) == 0  # nothing to re-estimate


def _batch(tiny_click_data):
    return next(iterate_batches(tiny_click_data, tiny_click_data.train_users[:16], 16))


def test_l2_penalises_every_embedding_row_and_mba_only_rows_in_the_batch(make_din, tiny_click_data):
    batch = _batch(tiny_click_data)
    frequencies = {"item": torch.ones(121), "category": torch.ones(9)}
    grads = {}
    for kind in ("l2", "mba"):
        model = make_din("din_prelu")
        regularisation(model, batch, frequencies, TrainConfig(regulariser=kind)).backward()
        grads[kind] = model.item_embedding.weight.grad.abs().sum(1) > 0
    present = torch.zeros(121, dtype=torch.bool)
    present[torch.cat([batch["history_items"].flatten(), batch["candidate_items"].flatten()])] = True
    present[0] = False
    assert torch.equal(grads["mba"], present) and not present.all()
    assert grads["l2"][1:].all() and not grads["l2"][0]  # padding row 0 is never penalised
    for kind in ("none", "dropout"):
        assert float(regularisation(make_din(), batch, frequencies, TrainConfig(regulariser=kind))) == 0.0


def test_dropout_discards_item_ids_at_its_rate_and_keeps_categories_and_mask(tiny_click_data):
    batch = _batch(tiny_click_data)
    dropped = drop_ids(batch, 0.5, np.random.default_rng(0))
    valid = batch["history_mask"] > 0
    discarded = (dropped["history_items"] == 0) & valid
    assert 0.35 < float(discarded.sum() / valid.sum()) < 0.65
    assert torch.equal(dropped["history_items"][~discarded], batch["history_items"][~discarded])
    assert torch.equal(dropped["history_categories"], batch["history_categories"])
    assert torch.equal(dropped["history_mask"], batch["history_mask"])


def test_early_stopping_ends_after_patience_epochs_without_improvement(tiny_click_data):
    cfg = TrainConfig(epochs=10, patience=2, lr=0.0, batch_size=128)  # lr 0: the first epoch is never beaten
    _, metrics = train_variant("din_prelu", tiny_click_data, cfg, progress=False)
    assert metrics["best_epoch"] == 1 and metrics["epochs_run"] == 3 and metrics["plateaued"]


def test_reestimate_mode_scores_with_re_estimated_moments(tiny_click_data):
    cfg = TrainConfig(epochs=1, batch_size=64, dice_stats="reestimate", reestimate_users=128)
    model, _ = train_variant("din_dice", tiny_click_data, cfg, progress=False)
    assert isinstance(model, DeepInterestNetwork)
    dice: Dice = dice_modules(model)[0]
    momentum_only = train_variant("din_dice", tiny_click_data, replace(cfg, dice_stats="running"), progress=False)[0]
    assert not torch.allclose(dice.running_mean, dice_modules(momentum_only)[0].running_mean)


def test_long_tail_world_has_most_items_rare_and_zero_keeps_uniform_exposure():
    cfg = ClickDataConfig(n_users=300, n_items=5000, n_categories=5, max_history=10, item_zipf=1.0)
    counts = make_click_data(cfg).id_frequencies(np.arange(300))["item"][1:]
    seen = counts[counts > 0]
    assert (seen < 5).mean() > 0.7
    top = np.sort(counts)[::-1]
    assert top[:50].sum() > 0.2 * counts.sum()  # 1% of the items hold over a fifth of the occurrences
    uniform = make_click_data(replace(cfg, item_zipf=0.0)).id_frequencies(np.arange(300))["item"][1:]
    assert np.sort(uniform)[::-1][:50].sum() < 0.05 * uniform.sum()


def test_per_user_auc_reproduces_gauc_and_bootstrap_keeps_pairs():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(200), 10)
    labels = (rng.random(2000) < 0.4).astype(np.float32)
    scores = labels + rng.normal(0, 1.0, 2000)
    found = per_user_auc(labels, scores, users)
    weights = np.array([n for n, _ in found.values()], float)
    aucs = np.array([a for _, a in found.values()])
    assert (weights * aucs).sum() / weights.sum() == pytest.approx(gauc(labels, scores, users))
    assert paired_bootstrap(weights, np.zeros_like(aucs)) == (0.0, 0.0, 0.0)
    point, low, high = paired_bootstrap(weights, np.full_like(aucs, 0.01) + rng.normal(0, 0.05, len(aucs)))
    assert low < point < high and low < 0.01 < high and high - low < 0.03


def _records(name, seed, shift, per_user_noise):
    rng = np.random.default_rng(seed)
    per_user = {str(u): [10, 0.7 + shift + float(rng.normal(0, per_user_noise))] for u in range(300)}
    value = float(np.mean([v[1] for v in per_user.values()]))
    return {"name": name, "seed": seed, "test": {"gauc": value, "auc": value, "per_user": per_user}}


def test_compare_resolves_a_real_gap_and_not_a_null_one():
    a = {s: _records("a", s, 0.02, 0.05) for s in range(3)}
    b = {s: _records("b", s + 10, 0.0, 0.05) for s in range(3)}
    null = {s: _records("c", s + 20, 0.0, 0.05) for s in range(3)}
    assert reading(compare(a, b), "a", "b") == "a better"
    assert reading(compare(b, a), "b", "a") == "a better"
    result = compare(b, null)
    assert reading(result, "b", "c").startswith("unresolved") and result["seeds"] == [0, 1, 2]
    assert result["seed_level_method"] == "hierarchical" and len(result["seed_level"]) == 3


def test_claims_say_supported_contradicted_or_unresolved_from_the_seed_level_interval():
    from benchmarks.ctr.report import claims

    def figure(per_seed, low, high):  # an older .json: per-seed differences and a users-only bootstrap
        return {"seeds": list(range(len(per_seed))), "per_seed": per_seed, "users": 100,
                "bootstrap": [float(np.mean(per_seed)), low, high]}

    figures = {"dice": {"comparisons": {"din_prelu - base": figure([0.010, 0.011, 0.012], 0.009, 0.013),
                                        # users alone would call this supported; the seeds disagree
                                        "din_dice - din_prelu": figure([0.004, -0.003, 0.002], 0.0001, 0.004)},
                        "models": {"base": {"gauc": [0.67, 0.001]}, "din_prelu": {"gauc": [0.681, 0.001]}}},
               "reg": {"comparisons": {"reg_mba - reg_l2": figure([-0.010, -0.012, -0.011], -0.014, -0.008)}}}
    text = "\n".join(claims(figures, oracle_gauc=0.78))
    assert "BaseModel (the paper): **supported**" in text
    assert "Dice beats PReLU (the paper): **unresolved**" in text
    assert "Student-t" in text  # the rule is printed
    assert "Not a claim of the paper" in text and "MBA's GAUC is lower than L2's" in text
    assert "recovers **10%**" in text  # 0.011 of the 0.11 gap to the oracle
    assert "QAT" not in text  # claims without figures are left out, not guessed
