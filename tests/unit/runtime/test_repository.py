from pathlib import Path

import pytest
from google.protobuf import text_format

from exporters.repository import ServingConfig, write_model
from infersuite.services.runtime import NotFound
from infersuite.services.runtime.repository import ModelRepository, parse_config
from tests.fixtures import write_add_one_onnx


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    onnx_path = write_add_one_onnx(tmp_path / "src" / "model.onnx")
    root = tmp_path / "repo"
    write_model(root, "add-one", onnx_path, {"family": "test"}, ServingConfig(max_batch_size=8), version=1)
    write_model(root, "add-one", onnx_path, {"family": "test", "v": 3}, ServingConfig(max_batch_size=8), version=3)
    return root


def test_latest_version_is_served_with_its_config_and_meta(repository: Path) -> None:
    model = ModelRepository(repository).resolve("add-one")
    assert model.version == "3"
    assert model.meta["v"] == 3 and len(model.meta["model_sha256"]) == 64
    assert model.config.platform == "onnxruntime_onnx"
    assert model.config.max_batch_size == 8
    # The batch dimension is implicit in Triton configs when max_batch_size > 0.
    assert [(i.name, list(i.dims)) for i in model.config.input] == [("x", [4])]
    assert list(model.config.dynamic_batching.preferred_batch_size) == [8]


def test_explicit_version_and_unknowns(repository: Path) -> None:
    repo = ModelRepository(repository)
    assert repo.resolve("add-one", "1").version == "1"
    with pytest.raises(NotFound, match="no version '2'"):
        repo.resolve("add-one", "2")
    with pytest.raises(NotFound, match=r"'missing' is not in the model repository$"):
        repo.resolve("missing")
    assert repo.names() == ["add-one"]


def test_config_typo_fails_against_tritons_schema(repository: Path) -> None:
    text = (repository / "add-one" / "config.pbtxt").read_text()
    assert parse_config(text).name == "add-one"
    with pytest.raises(text_format.ParseError, match="max_batch_sise"):
        parse_config(text.replace("max_batch_size", "max_batch_sise"))
