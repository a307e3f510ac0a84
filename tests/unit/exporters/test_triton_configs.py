"""Every config.pbtxt the exporters write parses against Triton's ModelConfig schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from exporters.triton_python import python_backend_config
from infersuite.services.runtime.repository import parse_config

ROOT = Path(__file__).resolve().parents[3]


def _configs(repository: Path) -> list[Path]:
    return sorted(repository.glob("*/config.pbtxt"))


def test_written_configs_parse_and_carry_batching_queue_and_tensorrt(tiny_ctr) -> None:
    configs = _configs(tiny_ctr.repository) + _configs(ROOT / "model_repository")
    assert configs
    for path in configs:
        config = parse_config(path.read_text())  # raises on any field Triton does not know
        assert config.name == path.parent.name
        assert config.platform == "onnxruntime_onnx"
        if config.max_batch_size > 0:
            assert config.dynamic_batching.default_queue_policy.max_queue_size > 0
        accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert all(a.name == "tensorrt" and a.parameters["precision_mode"] in {"FP32", "FP16", "INT8"}
                   for a in accelerators)


def test_python_backend_variant_drops_only_the_onnxruntime_specific_parts(tiny_ctr) -> None:
    config = parse_config((tiny_ctr.repository / "din-fp32" / "config.pbtxt").read_text())
    converted = python_backend_config(config)
    assert converted.backend == "python" and not converted.platform
    assert not converted.HasField("optimization")
    assert list(converted.input) == list(config.input) and converted.dynamic_batching == config.dynamic_batching


def test_a_typo_fails_the_schema() -> None:
    with pytest.raises(text_format.ParseError):
        text_format.Parse('name: "x"\nmax_batch_sizee: 4\n', mc.ModelConfig())
