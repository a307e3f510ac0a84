"""benchmarks.serving.request_path times the real OIP path: every ranking request is answered, none refused."""

import asyncio
from pathlib import Path

from benchmarks.serving.request_path import measure

SHIPPED = Path(__file__).resolve().parents[3] / "shipped_models"


def test_every_request_goes_through_the_whole_path_and_each_round_gives_a_figure() -> None:
    figures = asyncio.run(measure(SHIPPED, count=12, rounds=2))  # a refused request would raise here
    assert len(figures) == 2 and all(0 < figure < 1e6 for figure in figures)
