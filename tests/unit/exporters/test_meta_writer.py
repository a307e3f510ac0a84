"""Every exporter writes meta.json through exporters/repository.py, which stamps the schema version
and refuses a meta the schema refuses before writing anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exporters.repository import ServingConfig, write_model, write_variant
from infersuite.modelmeta import SCHEMA_VERSION, MetaError
from tests.fixtures import write_add_one_onnx

LIMITS = {"inputs": {"x": {"max_shape": [64, 4], "range": [-1.0, 1.0]}}, "max_elements": 256}


def test_a_valid_meta_is_written_with_the_schema_version(tmp_path: Path) -> None:
    onnx_path = write_add_one_onnx(tmp_path / "src" / "model.onnx")
    version_dir = write_model(tmp_path / "repo", "add-one", onnx_path, {"recipe": "fp32", "limits": LIMITS},
                              ServingConfig(max_batch_size=8))
    written = json.loads((version_dir / "meta.json").read_text())
    assert written["schema_version"] == SCHEMA_VERSION == 1
    assert written["limits"] == LIMITS and written["size_bytes"] == onnx_path.stat().st_size


def test_the_writer_refuses_an_invalid_meta_and_writes_nothing(tmp_path: Path) -> None:
    onnx_path = write_add_one_onnx(tmp_path / "src" / "model.onnx")
    bad = {"family": "ctr", "vocabulary": {"n_items": 0, "n_categories": 4}, "limits": LIMITS}
    with pytest.raises(MetaError, match=r"^model 'din-broken' version 1: meta.json field vocabulary.n_items: "
                                        r"Input should be greater than 0 \(got 0\)$"):
        write_model(tmp_path / "repo", "din-broken", onnx_path, bad, ServingConfig())
    assert not (tmp_path / "repo" / "din-broken").exists()


def test_a_variant_is_checked_with_its_source_s_meta_merged(tmp_path: Path) -> None:
    onnx_path = write_add_one_onnx(tmp_path / "src" / "model.onnx")
    repository = tmp_path / "repo"
    write_model(repository, "add-one-fp32", onnx_path, {"recipe": "fp32", "limits": LIMITS}, ServingConfig())
    with pytest.raises(MetaError, match=r"^model 'add-one-int8' version 1: meta.json field quality_gate: "):
        write_variant(repository, "add-one-fp32", "add-one-int8", onnx_path, {"recipe": "int8", "quality_gate": "ok"})
    assert not (repository / "add-one-int8").exists()
    version_dir = write_variant(repository, "add-one-fp32", "add-one-int8", onnx_path,
                                {"recipe": "int8", "quality_gate": "passed"})
    written = json.loads((version_dir / "meta.json").read_text())
    assert (written["source_model"], written["limits"], written["recipe"]) == ("add-one-fp32", LIMITS, "int8")
