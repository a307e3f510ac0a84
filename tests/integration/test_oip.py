"""The Open Inference Protocol with NVIDIA's own client (tritonclient) against infersuite."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, InferRequestedOutput, service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from infersuite.services.ctr import CtrService, CtrSettings
from infersuite.services.ctr.client import CtrClient
from tests.fixtures import serving

pytestmark = pytest.mark.integration
MODEL = "din-fp32"


@pytest.fixture(scope="module")
async def server_port(tiny_ctr):
    async with serving([CtrService(CtrSettings())], tiny_ctr.repository, metrics_port=-1) as served:
        yield served.port


def _din_inputs(n_items: int, n_categories: int, history: int = 6, candidates: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {
        "history_items": rng.integers(1, n_items + 1, (1, history)).astype(np.int64),
        "history_categories": rng.integers(1, n_categories + 1, (1, history)).astype(np.int64),
        "history_mask": np.ones((1, history), np.float32),
        "candidate_items": rng.integers(1, n_items + 1, candidates).astype(np.int64),  # rows layout: (N,)
        "candidate_categories": rng.integers(1, n_categories + 1, candidates).astype(np.int64),
        "candidate_user": np.zeros(candidates, np.int64),  # every row belongs to user 0
    }


def _triton_inputs(arrays):
    inputs = []
    for name, value in arrays.items():
        tensor = InferInput(name, list(value.shape), "INT64" if value.dtype == np.int64 else "FP32")
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


async def test_tritonclient_reads_metadata_readiness_config_and_statistics(server_port) -> None:
    client = triton_aio.InferenceServerClient(f"127.0.0.1:{server_port}")
    try:
        assert await client.is_server_live() and await client.is_server_ready()
        assert await client.is_model_ready(MODEL) and not await client.is_model_ready("nope")
        meta = await client.get_model_metadata(MODEL, as_json=True)
        assert {i["name"]: i["datatype"] for i in meta["inputs"]}["history_mask"] == "FP32"
        assert [o["name"] for o in meta["outputs"]] == ["click_probability", "activation_weights"]
        config = await client.get_model_config(MODEL, as_json=True)
        # The rows layout: Triton sees no batch dimension (max_batch_size 0, omitted from JSON); the
        # embedded runtime batches it from meta.json.
        assert config["config"]["platform"] == "onnxruntime_onnx" and "max_batch_size" not in config["config"]
        assert [i["dims"] for i in config["config"]["input"]][-1] == ["-1"]  # candidate_user (R,)
        batching = config["config"]["parameters"]["infersuite_dynamic_batching"]["string_value"]
        assert batching.startswith("rows layout (meta.json batching.rows): requests are combined along their rows "
                                   "(candidate_categories, candidate_items, candidate_user), up to ")
        index = await client.get_model_repository_index(as_json=True)
        assert {"name": MODEL, "version": "1", "state": "READY"}.items() <= index["models"][0].items()
        server_meta = await client.get_server_metadata(as_json=True)
        assert server_meta["name"] == "infersuite"
        await client.infer(MODEL, _triton_inputs(_din_inputs(50, 5)))
        stats = await client.get_inference_statistics(MODEL, as_json=True)
        assert int(stats["model_stats"][0]["inference_stats"]["success"]["count"]) >= 1
        assert int(stats["model_stats"][0]["inference_stats"]["queue"]["ns"]) > 0  # issue 14: was never written
    finally:
        await client.close()


async def test_tritonclient_inference_equals_the_domain_api(server_port, tiny_ctr) -> None:
    arrays = _din_inputs(tiny_ctr.n_items, tiny_ctr.n_categories)
    client = triton_aio.InferenceServerClient(f"127.0.0.1:{server_port}")
    try:
        result = await client.infer(MODEL, _triton_inputs(arrays),
                                    outputs=[InferRequestedOutput("click_probability")])
        oip_scores = result.as_numpy("click_probability")
        assert result.as_numpy("activation_weights") is None  # only what was asked for
    finally:
        await client.close()
    async with CtrClient(f"127.0.0.1:{server_port}") as ctr:
        domain = await ctr.score(arrays["history_items"][0], arrays["history_categories"][0],
                                 arrays["candidate_items"], arrays["candidate_categories"])
    np.testing.assert_allclose(oip_scores, domain.click_probabilities, atol=1e-6)


async def test_typed_contents_are_accepted_like_raw_contents(server_port, tiny_ctr) -> None:
    arrays = _din_inputs(tiny_ctr.n_items, tiny_ctr.n_categories, seed=4)
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    for name, value in arrays.items():
        tensor = request.inputs.add(name=name, datatype="INT64" if value.dtype == np.int64 else "FP32",
                                    shape=list(value.shape))
        field = tensor.contents.int64_contents if value.dtype == np.int64 else tensor.contents.fp32_contents
        field.extend(value.ravel().tolist())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server_port}") as channel:
        reply = await service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    scores = np.frombuffer(reply.raw_output_contents[0], np.float32)
    async with CtrClient(f"127.0.0.1:{server_port}") as ctr:
        domain = await ctr.score(arrays["history_items"][0], arrays["history_categories"][0],
                                 arrays["candidate_items"], arrays["candidate_categories"])
    np.testing.assert_allclose(scores, domain.click_probabilities, atol=1e-6)


def _raw_request(arrays, **overrides):
    request = service_pb2.ModelInferRequest(model_name=overrides.pop("model_name", MODEL),
                                            model_version=overrides.pop("model_version", ""))
    for name, value in arrays.items():
        datatype = "INT64" if value.dtype == np.int64 else "FP32"
        request.inputs.add(name=name, datatype=overrides.get(f"{name}.datatype", datatype),
                           shape=overrides.get(f"{name}.shape", list(value.shape)))
        request.raw_input_contents.append(overrides.get(f"{name}.raw", value.tobytes()))
    return request


BAD = {
    "wrong datatype": ({"history_mask.datatype": "FP64"}, grpc.StatusCode.INVALID_ARGUMENT,
                       "'history_mask' has datatype FP64, the model expects FP32"),
    "wrong rank": ({"history_items.shape": [6]}, grpc.StatusCode.INVALID_ARGUMENT,
                   "'history_items' has shape [6] but the model expects rank 2"),
    "raw length": ({"history_mask.raw": b"\x00" * 5}, grpc.StatusCode.INVALID_ARGUMENT,
                   "raw content is 5 bytes but shape [1, 6] of FP32 needs 24"),
    "negative dim": ({"history_items.shape": [1, -6]}, grpc.StatusCode.INVALID_ARGUMENT, "negative dimension"),
    "huge shape": ({"history_items.shape": [1, 10**12]}, grpc.StatusCode.INVALID_ARGUMENT, "over the limit"),
    # Issue 14: 144 KB that drove the server past 10 GiB; refused by its declared shape, nothing decoded.
    "history = candidates = 4000": (
        {f"{name}.{part}": value
         for name in ("history_items", "history_categories", "history_mask", "candidate_items",
                      "candidate_categories", "candidate_user")
         for part, value in (("shape", [1, 4000] if name.startswith("history") else [4000]),
                             ("raw", b"\x01" * (4000 * (4 if name == "history_mask" else 8))))},
        grpc.StatusCode.INVALID_ARGUMENT, "'history_items' dimension 1 is 4000, over the limit of 1024"),
    "id above the vocabulary": ({"candidate_items.raw": np.array([1, 2, 3, 10**9], np.int64).tobytes()},
                                grpc.StatusCode.INVALID_ARGUMENT,
                                "'candidate_items' value 1000000000 at index [3] is outside the model's range"),
    "negative id": ({"history_categories.raw": np.array([[1, -2, 1, 1, 1, 1]], np.int64).tobytes()},
                    grpc.StatusCode.INVALID_ARGUMENT, "'history_categories' value -2 at index [0, 1]"),
    "candidate of a user with no history row": (
        {"candidate_user.raw": np.array([0, 0, 1, 0], np.int64).tobytes()}, grpc.StatusCode.INVALID_ARGUMENT,
        "'candidate_user' value 1 at index [2] is outside the model's range [0, 0]"),
    "unknown model": ({"model_name": "nope"}, grpc.StatusCode.NOT_FOUND, "model 'nope' is not served here"),
    "unknown version": ({"model_version": "7"}, grpc.StatusCode.NOT_FOUND, "no loaded version '7'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
async def test_bad_oip_requests_get_clear_errors(server_port, case) -> None:
    overrides, code, message = BAD[case]
    arrays = _din_inputs(50, 5)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server_port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ModelInfer(_raw_request(arrays, **dict(overrides)), timeout=10)
        assert err.value.code() == code and message in err.value.details(), err.value.details()
        reply = await stub.ModelInfer(_raw_request(arrays), timeout=10)  # still serving
        assert reply.outputs[0].name == "click_probability"


async def test_typed_contents_together_with_raw_contents_are_refused(server_port) -> None:
    request = _raw_request(_din_inputs(50, 5))
    request.inputs[0].contents.int64_contents.extend([1] * 6)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "both typed contents and raw_input_contents" in err.value.details()


async def test_missing_and_unknown_inputs_are_named(server_port) -> None:
    arrays = _din_inputs(50, 5)
    client = triton_aio.InferenceServerClient(f"127.0.0.1:{server_port}")
    try:
        missing = {k: v for k, v in arrays.items() if k != "history_mask"}
        with pytest.raises(InferenceServerException, match=r"missing input.*history_mask"):
            await client.infer(MODEL, _triton_inputs(missing))
        extra = {**arrays, "user_age": np.ones((1, 1), np.float32)}
        with pytest.raises(InferenceServerException, match="'user_age' is not an input"):
            await client.infer(MODEL, _triton_inputs(extra))
    finally:
        await client.close()
