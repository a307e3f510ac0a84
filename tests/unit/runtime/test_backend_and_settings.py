import asyncio
from pathlib import Path

import numpy as np
import pytest

from exporters.repository import ServingConfig, write_model
from infersuite.services.runtime import InvalidArgument, NonFiniteOutput, NotFound, RuntimeSettings, Unavailable
from infersuite.services.runtime.backends.onnxruntime import OnnxRuntimeBackend, choose_providers
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.model_manager import ModelManager
from infersuite.services.runtime.repository import ModelRepository
from tests.fixtures import write_add_one_onnx, write_nan_embedder_onnx


def test_settings_read_the_infersuite_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERSUITE_PORT", "6001")
    monkeypatch.setenv("INFERSUITE_SERVICES", '["ctr", "audio"]')
    settings = RuntimeSettings()
    assert settings.port == 6001 and settings.services == ["ctr", "audio"]
    monkeypatch.setenv("INFERSUITE_PORT", "70000")
    with pytest.raises(ValueError, match="port"):
        RuntimeSettings()


def test_providers_fall_back_to_cpu() -> None:
    assert choose_providers(["NoSuchExecutionProvider"]) == ["CPUExecutionProvider"]
    assert choose_providers([])[-1] == "CPUExecutionProvider"


def _manager(tmp_path: Path, count: int = 2) -> ModelManager:
    onnx_path = write_add_one_onnx(tmp_path / "src" / "model.onnx")
    write_model(tmp_path / "repo", "add-one", onnx_path, {}, ServingConfig(instance_count=count))
    settings = RuntimeSettings(model_repository=tmp_path / "repo", intra_op_threads=1)
    return ModelManager(ModelRepository(settings.model_repository), OnnxRuntimeBackend(settings), Metrics())


def test_manager_loads_warms_up_and_runs_real_onnxruntime(tmp_path: Path) -> None:
    async def scenario() -> None:
        manager = _manager(tmp_path)
        with pytest.raises(Unavailable, match="not loaded"):
            manager.get("add-one")
        await manager.load(["add-one"])
        model = manager.get("add-one")
        assert model.instance_count == 2  # from the config's instance_group
        assert [(s.name, s.datatype, s.shape) for s in model.inputs] == [("x", "FP32", (-1, 4))]
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        results = await asyncio.gather(*(manager.infer("add-one", {"x": x}) for _ in range(4)))
        for out in results:
            np.testing.assert_array_equal(out["y"], x + 1)
        with pytest.raises(NotFound, match="not served here"):
            await manager.infer("other", {"x": x})
        await manager.close()

    asyncio.run(scenario())


def test_a_model_output_with_nan_is_an_error_and_counted_never_an_answer(tmp_path: Path) -> None:
    async def scenario() -> None:
        write_model(tmp_path / "repo", "nan", write_nan_embedder_onnx(tmp_path / "src" / "model.onnx"), {},
                    ServingConfig(instance_count=1))
        settings = RuntimeSettings(model_repository=tmp_path / "repo", intra_op_threads=1)
        metrics = Metrics()
        manager = ModelManager(ModelRepository(settings.model_repository), OnnxRuntimeBackend(settings), metrics)
        await manager.load(["nan"])
        counted = ("infersuite_model_nonfinite_outputs_total", {"model": "nan"})
        assert metrics.registry.get_sample_value(*counted) == 0.0  # exported at 0 before any failure
        with pytest.raises(NonFiniteOutput, match="model 'nan' produced NaN/Inf in its output 'embedding'") as err:
            await manager.infer("nan", {"waveform": np.ones((2, 16), np.float32)})
        assert err.value.code == "INTERNAL"
        assert metrics.registry.get_sample_value(*counted) == 1.0
        assert manager.stats["nan"].failure_count == 1 and manager.stats["nan"].success_count == 0
        await manager.close()

    asyncio.run(scenario())


def _write_lookup_onnx(path: Path) -> Path:
    """y = table[ids] through a Gather node with a telling name (onnxruntime quotes it in errors)."""
    from onnx import TensorProto, helper, save

    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
    table = helper.make_tensor("table", TensorProto.FLOAT, [3], [0.5, 1.5, 2.5])
    node = helper.make_node("Gather", ["table", "ids"], ["y"], name="secret_lookup_node")
    model = helper.make_model(helper.make_graph([node], "lookup", [ids], [y], [table]),
                              opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    save(model, str(path))
    return path


def test_onnxruntime_errors_reach_the_client_without_node_names(tmp_path: Path) -> None:
    """Issue 14: id 10**9 through the OIP answered with an onnxruntime node name."""
    onnx_path = _write_lookup_onnx(tmp_path / "src" / "model.onnx")
    write_model(tmp_path / "repo", "lookup", onnx_path, {}, ServingConfig())
    settings = RuntimeSettings(model_repository=tmp_path / "repo", intra_op_threads=1)
    manager = ModelManager(ModelRepository(settings.model_repository), OnnxRuntimeBackend(settings), Metrics())

    async def scenario() -> None:
        await manager.load(["lookup"])
        try:
            with pytest.raises(InvalidArgument) as err:
                await manager.infer("lookup", {"ids": np.array([[1, 10**9]], np.int64)})
        finally:
            await manager.close()
        assert err.value.message == "model 'lookup' cannot run on these inputs (ids [1, 2])"

    asyncio.run(scenario())


def test_load_failure_series_exist_at_zero_once_a_model_is_asked_for(tmp_path: Path) -> None:
    """increase() misses a counter's first event when its series is born at 1 (issue 14)."""
    onnx_path = write_add_one_onnx(tmp_path / "src" / "model.onnx")
    write_model(tmp_path / "repo", "add-one", onnx_path, {}, ServingConfig())
    (tmp_path / "repo" / "broken" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "broken" / "config.pbtxt").write_text('name: "broken"\n')
    (tmp_path / "repo" / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    settings = RuntimeSettings(model_repository=tmp_path / "repo", intra_op_threads=1)
    metrics = Metrics()
    manager = ModelManager(ModelRepository(settings.model_repository), OnnxRuntimeBackend(settings), metrics)

    async def scenario() -> None:
        await manager.load(["add-one"])
        assert metrics.registry.get_sample_value("infersuite_model_load_failures_total", {"model": "add-one"}) == 0
        with pytest.raises(Exception):  # noqa: B017 - onnxruntime's own error type
            await manager.load(["broken"])
        assert metrics.registry.get_sample_value("infersuite_model_load_failures_total", {"model": "broken"}) == 1
        reason = manager.load_failures["broken"].reason  # any OIP caller reads it (RepositoryIndex)
        assert reason.startswith("version 1 failed to load: ") and str(tmp_path) not in reason, reason
        await manager.close()

    asyncio.run(scenario())
