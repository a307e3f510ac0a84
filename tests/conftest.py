"""Session fixtures: tiny models trained in seconds and exported into real model repositories,
each trained once per test session (the family fixtures are plugins, never imported into test
modules: an imported fixture is a new fixture per module and retrains)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from infersuite.services.families import family_names

# Each family's session fixtures live in tests/fixtures_<family>.py, found by name (ctr's are below).
pytest_plugins = [f"tests.fixtures_{family}" for family in family_names()
                  if (Path(__file__).parent / f"fixtures_{family}.py").is_file()]


@dataclass(frozen=True)
class TinyCtr:
    repository: Path
    checkpoint: Path
    n_items: int
    n_categories: int


@pytest.fixture(scope="session")
def tiny_ctr(tmp_path_factory: pytest.TempPathFactory) -> TinyCtr:
    from exporters.ctr import export_din
    from exporters.repository import set_default_alias
    from models.ctr.data import ClickDataConfig, make_click_data
    from models.ctr.train import TrainConfig, save_checkpoint, train_variant

    root = tmp_path_factory.mktemp("ctr")
    data = make_click_data(ClickDataConfig(n_users=600, n_items=120, n_categories=8, max_history=20, seed=3))
    model, metrics = train_variant("din_dice", data, TrainConfig(epochs=1, batch_size=64), progress=False)
    checkpoint = root / "din_dice.pt"
    save_checkpoint(checkpoint, model, metrics, data)
    export_din(checkpoint, root / "repo", "din-fp32")
    set_default_alias(root / "repo", "din", "din-fp32")
    return TinyCtr(root / "repo", checkpoint, data.config.n_items, data.config.n_categories)
