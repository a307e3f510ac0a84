import asyncio
from pathlib import Path

import numpy as np
import pytest

from exporters.repository import ServingConfig, write_model
from services.runtime import NonFiniteOutput, NotFound, RuntimeSettings, Unavailable
from services.runtime.backends.onnxruntime import OnnxRuntimeBackend, choose_providers
from services.runtime.metrics import Metrics
from services.runtime.models import ModelManager
from services.runtime.repository import ModelRepository
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
