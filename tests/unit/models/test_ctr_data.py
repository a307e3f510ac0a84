"""Synthetic click log: determinism, id conventions, split by user, ground truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from models.ctr.data import iterate_batches, make_click_data, user_batch
from models.ctr.metrics import gauc


def test_same_seed_gives_identical_arrays_and_other_seed_differs(tiny_click_data, tiny_click_config):
    again = make_click_data(tiny_click_config)
    for name in ("history_items", "candidate_items", "labels", "click_probability", "test_users"):
        np.testing.assert_array_equal(getattr(again, name), getattr(tiny_click_data, name))
    other = make_click_data(replace(tiny_click_config, seed=4))
    assert not np.array_equal(other.history_items, tiny_click_data.history_items)


def test_split_is_by_user_disjoint_and_complete(tiny_click_data, tiny_click_config):
    d = tiny_click_data
    train, valid, test = set(d.train_users), set(d.valid_users), set(d.test_users)
    assert not (train & valid or train & test or valid & test)
    assert train | valid | test == set(range(d.n_users))
    assert len(test) == round(d.n_users * tiny_click_config.test_fraction)
    rows = d.impressions_of(d.test_users)
    assert set(d.user_index[rows]) == test


def test_ids_reserve_zero_for_padding(tiny_click_data, tiny_click_config):
    d, cfg = tiny_click_data, tiny_click_config
    assert d.item_category[0] == 0 and d.item_category[1:].min() >= 1
    assert d.item_category.max() == cfg.n_categories
    assert d.history_lengths.min() >= 1 and d.history_lengths.max() <= cfg.max_history
    valid = np.arange(cfg.max_history)[None, :] < d.history_lengths[:, None]
    assert (d.history_items[valid] >= 1).all() and (d.history_items[~valid] == 0).all()
    assert (d.history_items <= cfg.n_items).all()
    np.testing.assert_array_equal(d.history_categories, d.item_category[d.history_items])
    np.testing.assert_array_equal(d.candidate_categories, d.item_category[d.candidate_items])
    assert d.candidate_items.min() >= 1


def test_items_of_one_category_have_distinct_latents(tiny_click_data, tiny_click_config):
    d = tiny_click_data
    items = np.flatnonzero(d.item_category == 1)
    spread = d.item_latent[items].std(0).mean()
    assert spread > 0.5 * tiny_click_config.item_spread


def test_candidate_counts_and_user_order(tiny_click_data, tiny_click_config):
    d, cfg = tiny_click_data, tiny_click_config
    counts = np.diff(d.impression_offsets)
    assert counts.min() >= cfg.min_candidates and counts.max() <= cfg.max_candidates
    assert (np.diff(d.user_index) >= 0).all()
    np.testing.assert_array_equal(np.bincount(d.user_index), counts)


def test_true_probability_in_open_interval_and_labels_match_its_rate(tiny_click_data):
    p, labels = tiny_click_data.click_probability, tiny_click_data.labels
    assert (p > 0).all() and (p < 1).all()
    tolerance = 4 * np.sqrt((p * (1 - p)).sum()) / len(p)  # 4 binomial standard errors
    assert abs(labels.mean() - p.mean()) < tolerance
    assert labels[p > 0.6].mean() > labels[p < 0.2].mean() + 0.3


def test_ground_truth_ranks_candidates_within_a_user(tiny_click_data):
    """The true probability separates clicks inside users: personalisation is learnable."""
    d = tiny_click_data
    assert gauc(d.labels, d.click_probability, d.user_index) > 0.7


def test_user_batch_pads_candidates_and_trims_history(tiny_click_data):
    d = tiny_click_data
    users = np.array([0, 5, 9])
    batch = user_batch(d, users)
    t_max = d.history_lengths[users].max()
    counts = d.impression_offsets[users + 1] - d.impression_offsets[users]
    assert batch["history_items"].shape == (3, t_max)
    assert batch["candidate_items"].shape == (3, counts.max())
    np.testing.assert_array_equal(batch["candidate_mask"].sum(1).numpy(), counts)
    np.testing.assert_array_equal(batch["history_mask"].sum(1).numpy(), d.history_lengths[users])
    padded = batch["candidate_mask"] == 0
    assert (batch["candidate_items"][padded] == 0).all()
    rows = batch["impression_rows"][~padded].numpy()
    np.testing.assert_array_equal(batch["labels"][~padded].numpy(), d.labels[rows])


def test_iterate_batches_visits_each_user_once(tiny_click_data):
    d = tiny_click_data
    rng = np.random.default_rng(0)
    for bucket in (False, True):
        rows = [
            b["impression_rows"][b["candidate_mask"] > 0]
            for b in iterate_batches(d, d.train_users, 64, rng, bucket_by_length=bucket)
        ]
        seen = np.sort(np.concatenate(rows))
        np.testing.assert_array_equal(seen, np.sort(d.impressions_of(d.train_users)))
