"""Sparse embedding tables under lazy Adam (TrainConfig.sparse_embeddings): the setting in which the DIN
paper's mini-batch aware regularisation (eq. 4) saves what L2 on every row costs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.ctr.data import iterate_batches
from models.ctr.din import mini_batch_aware_l2
from models.ctr.train import TrainConfig, frequency_tensors, make_optimizer, train_step, train_variant


def _batch(data):
    return next(iterate_batches(data, data.train_users[:16], 16))


def _present(batch, rows: int) -> torch.Tensor:
    present = torch.zeros(rows, dtype=torch.bool)
    present[torch.cat([batch["history_items"].flatten(), batch["candidate_items"].flatten()])] = True
    present[0] = False
    return present


def test_mba_gives_a_sparse_table_a_sparse_gradient_equal_to_the_dense_one(make_din, tiny_click_data):
    batch, frequencies = _batch(tiny_click_data), frequency_tensors(tiny_click_data)
    ids = {"item": torch.cat([batch["history_items"].flatten(), batch["candidate_items"].flatten()]),
           "category": torch.cat([batch["history_categories"].flatten(), batch["candidate_categories"].flatten()])}
    dense, sparse = make_din(seed=3), make_din(seed=3)
    for table in sparse.embedding_tables().values():
        table.sparse = True
    values = [mini_batch_aware_l2(m, ids, frequencies, 0.05) for m in (dense, sparse)]
    torch.testing.assert_close(values[0], values[1])
    for value in values:
        value.backward()
    for name in ("item", "category"):
        d, s = dense.embedding_tables()[name].weight.grad, sparse.embedding_tables()[name].weight.grad
        assert s.is_sparse and not d.is_sparse
        torch.testing.assert_close(s.to_dense(), d)
        assert float(d.abs().sum()) > 0.0


def test_a_sparse_step_moves_only_the_rows_its_batch_looks_up(make_din, tiny_click_data):
    batch, frequencies = _batch(tiny_click_data), frequency_tensors(tiny_click_data)
    model = make_din()
    cfg = TrainConfig(regulariser="mba", sparse_embeddings=True, lr=1e-2)
    optimizer = make_optimizer(model, cfg)
    before = model.item_embedding.weight.detach().clone()
    head_before = [p.detach().clone() for p in model.head.parameters()]
    loss = train_step(model, optimizer, batch, frequencies, cfg, np.random.default_rng(0))
    moved = (model.item_embedding.weight.detach() != before).any(1)
    present = _present(batch, before.shape[0])
    assert np.isfinite(loss) and model.item_embedding.weight.grad.is_sparse
    assert torch.equal(moved, present) and not present.all()  # every looked-up row moved, no other
    assert any(not torch.equal(a, b) for a, b in zip(head_before, model.head.parameters(), strict=True))
    state = optimizer.state_tensors()
    assert state and all(torch.isfinite(t).all() for t in state)


def test_dense_tables_move_every_row_under_adam_whatever_the_regulariser(make_din, tiny_click_data):
    """The trainer's default: Adam's moments move rows after their gradient has gone, so a second step moves
    rows the second batch never looked up; that is what sparse tables avoid."""
    batches = iterate_batches(tiny_click_data, tiny_click_data.train_users[:32], 16)
    first, second = next(batches), next(batches)
    model, cfg = make_din(), TrainConfig(regulariser="mba", lr=1e-2)
    optimizer, rng = make_optimizer(model, cfg), np.random.default_rng(0)
    frequencies = frequency_tensors(tiny_click_data)
    train_step(model, optimizer, first, frequencies, cfg, rng)
    before = model.item_embedding.weight.detach().clone()
    train_step(model, optimizer, second, frequencies, cfg, rng)
    moved = (model.item_embedding.weight.detach() != before).any(1)
    only_first = _present(first, before.shape[0]) & ~_present(second, before.shape[0])
    assert only_first.any() and moved[only_first].all()


def test_sparse_tables_refuse_l2_on_every_row(make_din):
    with pytest.raises(ValueError, match="L2 on every row"):
        make_optimizer(make_din(), TrainConfig(regulariser="l2", sparse_embeddings=True))


def test_a_variant_trains_with_sparse_tables_and_learns(tiny_click_data):
    cfg = TrainConfig(epochs=2, batch_size=64, sparse_embeddings=True, lr=5e-3)
    model, metrics = train_variant("din_dice", tiny_click_data, cfg, progress=False)
    assert model.item_embedding.sparse and model.category_embedding.sparse
    assert 0.55 < metrics["valid_gauc"] <= 1.0 and np.isfinite(metrics["test_gauc"])
    dense_model, dense = train_variant("din_dice", tiny_click_data, replace(cfg, sparse_embeddings=False),
                                       progress=False)
    assert not dense_model.item_embedding.sparse
    assert abs(metrics["valid_gauc"] - dense["valid_gauc"]) < 0.1  # the same training, lazier moments
