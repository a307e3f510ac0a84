"""Serve your own model, like Triton: every model of the repository is served by default (model control
none), a directory holding only model.onnx needs no config (derived from the graph), and tritonclient
works end to end, unary and streaming, on models nobody here wrote (onnxruntime's own sample models)
and on a torch model exported by the test itself."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from tests.fixtures import serving

pytestmark = pytest.mark.integration
SAMPLES = Path(onnxruntime.__file__).parent / "datasets"  # onnxruntime's bundled sample models


def export_torch_mlp(path: Path) -> Path:
    """A user's torch MLP (8 features -> 3 scores) exported with a dynamic batch axis."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(model, (torch.zeros(2, 8),), str(path), input_names=["features"], output_names=["scores"],
                      dynamic_shapes=({0: batch},), dynamo=True, opset_version=18, verbose=False)
    return path


@pytest.fixture(scope="module")
def user_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("user-repository")
    export_torch_mlp(root / "mlp" / "1" / "model.onnx")  # no config.pbtxt, no meta.json
    for name, sample in [("sigmoid", "sigmoid.onnx"), ("mul", "mul_1.onnx")]:
        (root / name / "1").mkdir(parents=True)
        shutil.copy(SAMPLES / sample, root / name / "1" / "model.onnx")
    (root / "mul" / "config.pbtxt").write_text("instance_group { count: 2 }\n")  # a partial config
    return root


def _reference(model: Path, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    return onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, inputs)


def _input(name: str, value: np.ndarray) -> InferInput:
    tensor = InferInput(name, list(value.shape), "FP32")
    tensor.set_data_from_numpy(value)
    return tensor


@pytest.fixture(scope="module")
async def user_server(user_repository: Path):
    async with serving([], user_repository, metrics_port=-1) as served:  # defaults: model control none
        yield served


async def test_every_model_is_served_with_a_config_derived_from_its_graph(user_server, user_repository) -> None:
    client = triton_aio.InferenceServerClient(user_server.address)
    try:
        assert await client.is_server_ready()
        index = await client.get_model_repository_index(as_json=True)
        assert {m["name"]: m["state"] for m in index["models"]} == {"mlp": "READY", "mul": "READY", "sigmoid": "READY"}
        mlp = (await client.get_model_config("mlp", as_json=True))["config"]
        assert mlp["platform"] == "onnxruntime_onnx" and mlp["max_batch_size"] == 4 and "dynamic_batching" in mlp
        assert [(i["name"], i["data_type"], i["dims"]) for i in mlp["input"]] == [("features", "TYPE_FP32", ["8"])]
        sigmoid = (await client.get_model_config("sigmoid", as_json=True))["config"]
        assert "max_batch_size" not in sigmoid and sigmoid["input"][0]["dims"] == ["3", "4", "5"]
        mul = (await client.get_model_config("mul", as_json=True))["config"]
        assert mul["instance_group"][0]["count"] == 2 and mul["input"][0]["name"] == "X"  # partial config completed
        metadata = await client.get_model_metadata("mlp", as_json=True)
        assert metadata["inputs"][0]["shape"] == ["-1", "8"]
    finally:
        await client.close()
    policy = user_server.server.models.policy("mlp")
    assert policy.combine and policy.max_batch_size == 4  # batched like the families' models


async def test_tritonclient_unary_answers_equal_onnxruntime(user_server, user_repository) -> None:
    rng = np.random.default_rng(0)
    client = triton_aio.InferenceServerClient(user_server.address)
    try:
        features = rng.normal(size=(3, 8)).astype(np.float32)
        result = await client.infer("mlp", [_input("features", features)], outputs=[InferRequestedOutput("scores")])
        expected = _reference(user_repository / "mlp" / "1" / "model.onnx", {"features": features})[0]
        np.testing.assert_allclose(result.as_numpy("scores"), expected, rtol=1e-5, atol=1e-6)
        x = rng.normal(size=(3, 4, 5)).astype(np.float32)
        result = await client.infer("sigmoid", [_input("x", x)])
        np.testing.assert_allclose(result.as_numpy("y"), 1 / (1 + np.exp(-x)), rtol=1e-5)
        # Concurrent requests share executions (dynamic batching), each gets its own rows back.
        many = [rng.normal(size=(1, 8)).astype(np.float32) for _ in range(24)]
        answers = await asyncio.gather(*(client.infer("mlp", [_input("features", f)]) for f in many))
        for features, answer in zip(many, answers, strict=True):
            expected = _reference(user_repository / "mlp" / "1" / "model.onnx", {"features": features})[0]
            np.testing.assert_allclose(answer.as_numpy("scores"), expected, rtol=1e-5, atol=1e-6)
        stats = (await client.get_inference_statistics("mlp", as_json=True))["model_stats"][0]
        assert int(stats["inference_count"]) >= 25
    finally:
        await client.close()


async def test_requests_outside_the_derived_limits_are_invalid_argument(user_server) -> None:
    client = triton_aio.InferenceServerClient(user_server.address)
    try:
        with pytest.raises(InferenceServerException, match="dimension 0 is 5, over the limit of 4") as raised:
            await client.infer("mlp", [_input("features", np.zeros((5, 8), np.float32))])
        assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
        with pytest.raises(InferenceServerException, match="dimension 1 is 9, over the limit of 8") as raised:
            await client.infer("mlp", [_input("features", np.zeros((1, 9), np.float32))])
        assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    finally:
        await client.close()


async def test_nan_or_inf_sent_by_the_client_is_its_fault_not_internal(user_server) -> None:
    client = triton_aio.InferenceServerClient(user_server.address)
    try:
        for bad in (np.nan, np.inf):
            features = np.zeros((1, 8), np.float32)
            features[0, 3] = bad
            with pytest.raises(InferenceServerException, match=r"input 'features' holds 1 NaN or Inf value\(s\), the "
                               rf"first at index \[0, 3\] \({bad}\)") as raised:
                await client.infer("mlp", [_input("features", features)])
            assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    finally:
        await client.close()


async def test_tritonclient_streaming_answers_every_request(user_server, user_repository) -> None:
    rng = np.random.default_rng(1)
    sent = {f"req-{i}": rng.normal(size=(2, 8)).astype(np.float32) for i in range(12)}

    async def requests():
        for request_id, features in sent.items():
            yield {"model_name": "mlp", "inputs": [_input("features", features)], "request_id": request_id}

    client = triton_aio.InferenceServerClient(user_server.address)
    answered: dict[str, np.ndarray] = {}
    try:
        async for result, error in client.stream_infer(requests()):
            assert error is None
            answered[result.get_response().id] = result.as_numpy("scores")
            if len(answered) == len(sent):
                break
    finally:
        await client.close()
    session = user_repository / "mlp" / "1" / "model.onnx"
    for request_id, features in sent.items():
        np.testing.assert_allclose(answered[request_id], _reference(session, {"features": features})[0],
                                   rtol=1e-5, atol=1e-6)


async def test_a_model_that_cannot_be_served_is_reported_and_the_others_still_serve(tmp_path: Path) -> None:
    (tmp_path / "sigmoid" / "1").mkdir(parents=True)
    shutil.copy(SAMPLES / "sigmoid.onnx", tmp_path / "sigmoid" / "1" / "model.onnx")
    (tmp_path / "iris" / "1").mkdir(parents=True)  # a sequence-of-maps output: no tensor type to send it as
    shutil.copy(SAMPLES / "logreg_iris.onnx", tmp_path / "iris" / "1" / "model.onnx")
    (tmp_path / "typo" / "1").mkdir(parents=True)
    shutil.copy(SAMPLES / "mul_1.onnx", tmp_path / "typo" / "1" / "model.onnx")
    (tmp_path / "typo" / "config.pbtxt").write_text("max_batch_sise: 4\n")
    async with serving([], tmp_path, metrics_port=-1, wait_ready=False) as served:
        with pytest.raises(Exception, match=r"typo|iris"):
            await served.server.wait_ready(timeout=60)
        client = triton_aio.InferenceServerClient(served.address)
        try:
            assert not await client.is_server_ready()  # strict readiness, as Triton's default
            index = {m["name"]: m for m in (await client.get_model_repository_index(as_json=True))["models"]}
            assert index["sigmoid"]["state"] == "READY"
            assert index["iris"]["state"] == "UNAVAILABLE"
            assert "seq(map(int64,tensor(float)))" in index["iris"]["reason"]
            assert "typo/config.pbtxt does not parse" in index["typo"]["reason"]
            result = await client.infer("sigmoid", [_input("x", np.zeros((3, 4, 5), np.float32))])
            np.testing.assert_allclose(result.as_numpy("y"), 0.5)
            with pytest.raises(InferenceServerException, match="not loaded yet") as raised:
                await client.infer("typo", [_input("X", np.zeros((3, 2), np.float32))])
            assert raised.value.status() == "StatusCode.UNAVAILABLE"
        finally:
            await client.close()


async def test_explicit_mode_loads_the_start_up_list_then_what_is_asked(user_repository: Path) -> None:
    async with serving([], user_repository, metrics_port=-1, model_control_mode="explicit",
                       load_models=["sigmoid"]) as served:
        client = triton_aio.InferenceServerClient(served.address)
        try:
            assert await client.is_model_ready("sigmoid") and not await client.is_model_ready("mlp")
            with pytest.raises(InferenceServerException, match="RepositoryModelLoad or INFERSUITE_LOAD_MODELS"):
                await client.infer("mlp", [_input("features", np.zeros((1, 8), np.float32))])
            await client.load_model("mlp")
            result = await client.infer("mlp", [_input("features", np.zeros((1, 8), np.float32))])
            assert result.as_numpy("scores").shape == (1, 3)
            await client.unload_model("sigmoid")
            assert not await client.is_model_ready("sigmoid") and await client.is_server_ready()
        finally:
            await client.close()


async def test_the_readme_example_runs_on_a_model_nobody_here_wrote(user_server) -> None:
    """infersuite/examples/own_model.py (README "Serve your own model"), as a user runs it."""
    root = Path(__file__).resolve().parents[2]
    for model, expected in [("sigmoid", "output y: shape [3, 4, 5]"), ("mlp", "output scores: shape [1, 3]")]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(root / "infersuite" / "examples" / "own_model.py"), model,
            env={**os.environ, "INFERSUITE_TARGET": user_server.address},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0 and expected in output.decode(), output.decode()[-2000:]
