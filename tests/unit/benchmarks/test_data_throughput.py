"""The data-throughput benchmark (benchmarks/data_throughput.py, issue 24) on a tiny click log: the loader
timed in a child process, one training epoch measured, and the report's table and figures sane."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import data_throughput as bench


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return bench.run(["ctr-clicklog"], scale=0.004, repeats=2, workdir=tmp_path_factory.mktemp("throughput"),
                     command="test")


def test_the_loader_and_the_training_are_measured(result: dict) -> None:
    (row,) = result["families"]
    assert row["family"] == "ctr-clicklog" and row["unit"] == "events"
    assert row["size"]["users"] == 300 and row["size"]["files"] == 1 and row["size"]["bytes"] > 0
    assert row["units"] > 1000  # every user has several events
    assert len(row["load"]["runs"]) == 2 and all(r["wall_s"] > 0 and r["cpu_s"] > 0 for r in row["load"]["runs"])
    assert row["loader_units_per_s"] == pytest.approx(row["units"] / row["load"]["wall_s"])
    assert row["load"]["peak_reset"]  # each load's peak is its own (the import transient not in it)
    assert row["peak_rss_mib"] > 50 and 0 <= row["load_rss_mib"] < row["peak_rss_mib"]  # imports resident
    training = row["training"]
    assert 0 < training["fraction"] <= 1 and training["full"]["samples"] > training["half"]["samples"] > 0
    assert training["epoch_s"] > 0 and training["samples_per_s"] > 0 and training["method"] in ("marginal", "whole run")
    assert row["training_units_per_s"] == pytest.approx(row["units"] / training["epoch_s"])
    assert row["ratio"] == pytest.approx(row["loader_units_per_s"] / row["training_units_per_s"])
    assert 0 < row["default_run"]["load_share"] < 1 and row["default_run"]["epochs"] == 24
    assert result["machine"]["cores"] >= 1 and len(result["load_average_after"]) == 3


def test_the_report_holds_the_table_and_what_it_shows(result: dict) -> None:
    text = bench.render(result)
    assert "Produced by `test`" in text and "load average before" in text
    header = next(line for line in text.splitlines() if line.startswith("| family |"))
    row = next(line for line in text.splitlines() if line.startswith("| ctr-clicklog |"))
    assert len(header.split("|")) == len(row.split("|")) == 15
    assert "## What this shows" in text and "**ctr-clicklog**" in text
    cores = result["families"][0]["cores"]  # /proc/stat over the family's measurement, in the header
    assert 0.0 <= cores["idle_share"] <= 1.0 and 0.0 <= cores["foreign_share"] <= 1.0
    assert f"ctr-clicklog idle {cores['idle_share']:.0%}, foreign {cores['foreign_share']:.1%}" in text
    json.dumps(result)  # the .json beside the report


def test_every_family_writes_a_loadable_example(tmp_path: Path) -> None:
    """The image and audio examples at their smallest, through their loaders (no training: seconds)."""
    for family in ("segmentation", "splitcompute", "audio"):
        size = bench.FAMILIES[family].size(0.0)
        written = bench.write_example(family, tmp_path / family, size)
        _, units, details = bench.load(family, tmp_path / family)
        assert written["files"] > 0 and units > 0, family
        if family == "audio":  # clips of 3 s: 3 windows of 1 s each, at every source rate
            assert units == pytest.approx(size * bench.AUDIO_CLIP_SECONDS) and details["windows"] == 3 * size
        elif family == "segmentation":  # an image and its annotation each, and classes.txt
            assert units == (written["files"] - 1) / 2 == size
        else:  # one folder per class
            assert units == written["files"] == size * 10


def test_the_other_layouts_load_what_their_family_loads(tmp_path: Path) -> None:
    """ctr-parquet, segmentation-ade20k and audio-hear: the family's example in another layout loads the same
    amount through that layout's loader, and trains as that family."""
    pairs = {"ctr-parquet": "ctr-clicklog", "segmentation-ade20k": "segmentation", "audio-hear": "audio"}
    for layout, family in pairs.items():
        assert bench.FAMILIES[layout].trainer == family
        size = bench.FAMILIES[layout].size(0.0)
        bench.write_example(layout, tmp_path / layout, size)
        loaded, units, _ = bench.load(layout, tmp_path / layout)
        if layout == "ctr-parquet":
            assert (tmp_path / layout / "clicks.parquet").is_file()
            assert not (tmp_path / layout / "clicks.csv").exists()
            bench.write_example(family, tmp_path / family, size)
            assert units == bench.load(family, tmp_path / family)[1]  # the same events, from Parquet
        elif layout == "segmentation-ade20k":  # ADE label 0 (the outlines) ignored, k -> class k - 1
            assert units == size and len(loaded.test) == size // 10 and len(loaded.class_names) > 1
        else:  # 3 s clips at the model's rate, train/valid/test 60/20/20
            assert units == pytest.approx(size * bench.AUDIO_CLIP_SECONDS)
            assert loaded[0].summary["split"] == "train + valid -> test"
