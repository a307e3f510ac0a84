"""Shared fixtures for the model unit tests; the ctr ones build a tiny click world in a second."""

from __future__ import annotations

import pytest
import torch

from models.ctr.data import ClickData, ClickDataConfig, make_click_data
from models.ctr.din import DeepInterestNetwork, variant_config

TINY_CLICK_CONFIG = ClickDataConfig(
    n_users=800, n_items=120, n_categories=8, max_history=20, min_candidates=6,
    max_candidates=10, seed=3,
)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_click_config() -> ClickDataConfig:
    return TINY_CLICK_CONFIG


@pytest.fixture(scope="session")
def tiny_click_data() -> ClickData:
    """800 users, 120 items in 8 categories, histories up to 20 behaviours."""
    return make_click_data(TINY_CLICK_CONFIG)


@pytest.fixture
def make_din():
    """Factory: an untrained model of one variant over the tiny vocabulary, seeded."""

    def build(variant: str = "din_dice", seed: int = 0, **overrides) -> DeepInterestNetwork:
        torch.manual_seed(seed)
        cfg = variant_config(variant, TINY_CLICK_CONFIG.n_items, TINY_CLICK_CONFIG.n_categories, **overrides)
        return DeepInterestNetwork(cfg)

    return build
