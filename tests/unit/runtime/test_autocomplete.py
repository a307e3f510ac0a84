"""Triton-style auto-complete: a config derived from the graph's tensors and merged with a partial config.pbtxt."""

from __future__ import annotations

from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2

from infersuite.services.runtime.autocomplete import complete_config
from infersuite.services.runtime.repository import ModelRepository, RepositoryError, parse_config
from infersuite.services.runtime.tensors import TensorSpec
from tests.fixtures import write_add_one_onnx

X = TensorSpec("x", "FP32", (-1, 8))
Y = TensorSpec("y", "FP32", (-1, 3))


def _config(text: str = "") -> model_config_pb2.ModelConfig:
    config = parse_config(text)
    config.name = config.name or "m"
    return config


def test_a_graph_with_a_shared_dynamic_first_axis_batches_with_dynamic_batching() -> None:
    config = complete_config(_config(), [X], [Y], default_max_batch_size=4)
    assert config.platform == "onnxruntime_onnx" and config.backend == "onnxruntime"
    assert config.max_batch_size == 4 and config.HasField("dynamic_batching")
    # Triton's convention: with max_batch_size > 0 the dims leave out the batch axis.
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("x", model_config_pb2.TYPE_FP32, [8])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("y", [3])]


def test_fixed_first_axis_or_a_zero_default_means_no_batch_axis() -> None:
    fixed = complete_config(_config(), [TensorSpec("x", "FP32", (3, 4, 5))], [TensorSpec("y", "FP32", (3, 4, 5))], 4)
    assert fixed.max_batch_size == 0 and not fixed.HasField("dynamic_batching")
    assert list(fixed.input[0].dims) == [3, 4, 5]
    off = complete_config(_config(), [X], [Y], default_max_batch_size=0)
    assert off.max_batch_size == 0 and list(off.input[0].dims) == [-1, 8]
    # One output without the batch axis: the first axes are not a shared batch axis.
    mixed = complete_config(_config(), [X], [TensorSpec("score", "FP32", (3,))], 4)
    assert mixed.max_batch_size == 0


def test_a_partial_config_keeps_what_it_declares_and_gets_the_rest() -> None:
    partial = _config('max_batch_size: 16\ninstance_group { count: 2 }\n'
                      'input { name: "x" data_type: TYPE_FP32 dims: 8 }')
    config = complete_config(partial, [X], [Y], default_max_batch_size=4)
    assert config.max_batch_size == 16 and config.instance_group[0].count == 2
    assert [t.name for t in config.input] == ["x"] and [(t.name, list(t.dims)) for t in config.output] == [("y", [3])]
    # A scheduler chosen by config.pbtxt stays; none is added to a model that does not batch.
    chosen = complete_config(_config("max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 500 }"),
                             [X], [Y], 4)
    assert chosen.dynamic_batching.max_queue_delay_microseconds == 500
    # Inputs written out with max_batch_size unset (0): the user chose no batch axis, none is guessed.
    spelled = complete_config(_config('input { name: "x" data_type: TYPE_FP32 dims: [-1, 8] }'), [X], [Y], 4)
    assert spelled.max_batch_size == 0 and list(spelled.output[0].dims) == [-1, 3]


BATCH = "max_batch_size: 4\n"


@pytest.mark.parametrize(("text", "message"), [
    ('input { name: "z" data_type: TYPE_FP32 dims: 8 }', r"m/config.pbtxt input 'z' is not an input of the graph"),
    (BATCH + 'input { name: "x" data_type: TYPE_INT64 dims: 8 }', "is TYPE_INT64 but the graph's is TYPE_FP32"),
    (BATCH + 'input { name: "x" data_type: TYPE_FP32 dims: 9 }', r"has dims \[9\] but the graph's are \[8\]"),
    ('max_batch_size: 4\noutput { name: "y" data_type: TYPE_FP32 dims: [3, 1] }', "output 'y' has dims"),
])
def test_a_config_that_contradicts_the_graph_is_refused_naming_the_tensor(text: str, message: str) -> None:
    with pytest.raises(RepositoryError, match=message):
        complete_config(_config(text), [X], [Y], 4)


def test_max_batch_size_needs_a_dynamic_first_axis() -> None:
    with pytest.raises(RepositoryError, match="needs a dynamic first axis"):
        complete_config(_config('max_batch_size: 4\ninput { name: "x" dims: [4, 5] }'),
                        [TensorSpec("x", "FP32", (3, 4, 5))], [TensorSpec("y", "FP32", (3, 4, 5))], 4)


def test_a_directory_with_only_model_onnx_is_a_model(tmp_path: Path) -> None:
    write_add_one_onnx(tmp_path / "bare" / "1" / "model.onnx")
    (tmp_path / "empty" / "1").mkdir(parents=True)  # no model.onnx, no config.pbtxt: not a model
    (tmp_path / ".hidden" / "1").mkdir(parents=True)
    write_add_one_onnx(tmp_path / ".hidden" / "1" / "model.onnx")
    repository = ModelRepository(tmp_path)
    assert repository.names() == ["bare"]
    entry = repository.resolve("bare")
    assert entry.version == "1" and entry.config == model_config_pb2.ModelConfig(name="bare") and entry.meta == {}


def test_unparsable_repository_files_name_the_file(tmp_path: Path) -> None:
    write_add_one_onnx(tmp_path / "m" / "1" / "model.onnx")
    (tmp_path / "m" / "config.pbtxt").write_text("max_batch_sise: 4")
    repository = ModelRepository(tmp_path)
    assert repository.names() == ["m"]
    with pytest.raises(RepositoryError, match=r"m/config.pbtxt does not parse as a Triton ModelConfig.*max_batch_sise"):
        repository.resolve("m")
    (tmp_path / "m" / "config.pbtxt").write_text('name: "other"')
    with pytest.raises(RepositoryError, match="names the model 'other', not its directory 'm'"):
        repository.resolve("m")
    (tmp_path / "m" / "config.pbtxt").unlink()
    (tmp_path / "m" / "1" / "meta.json").write_text("{not json")
    with pytest.raises(RepositoryError, match=r"m/1/meta.json is not valid JSON"):
        repository.resolve("m")
    (tmp_path / "aliases.json").write_text("[1")
    with pytest.raises(RepositoryError, match=r"aliases\.json is not valid JSON"):
        repository.canonical("m")
