"""The OIP ModelInfer plan (infersuite/services/runtime/oip/plan.py): it decodes a well-formed raw request to
exactly what the step-by-step decoder gives, and leaves every request that decoder would refuse (or
decode from typed contents) to it, so refusals keep their code and message."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2

from infersuite.services.runtime import InvalidArgument
from infersuite.services.runtime.batching import BatchingPolicy
from infersuite.services.runtime.errors import ResourceExhausted
from infersuite.services.runtime.limits import model_limits
from infersuite.services.runtime.metrics import Metrics
from infersuite.services.runtime.model_manager import ModelManager
from infersuite.services.runtime.oip.converters import decode_inputs
from infersuite.services.runtime.oip.plan import InferPlan
from infersuite.services.runtime.oip.servicer import OipServicer
from infersuite.services.runtime.repository import ModelRepository
from infersuite.services.runtime.tensors import TensorSpec
from tests.fixtures import FakeModel

# A rows-layout model in small: one history per request, candidates as rows.
INPUTS = [TensorSpec("history", "INT64", (-1, -1)), TensorSpec("mask", "FP32", (-1, -1)),
          TensorSpec("candidates", "INT64", (-1,)), TensorSpec("weights", "FP32", (-1, 3))]
OUTPUTS = [TensorSpec("probability", "FP32", (-1,)), TensorSpec("attention", "FP32", (-1, -1))]
META = {"limits": {"max_elements": 400,
                   "inputs": {"history": {"max_shape": [2, 50]}, "candidates": {"max_shape": [60]}},
                   "products": {"cells": {"axes": [["candidates", 0], ["history", 1]], "max": 1000}}},
        "batching": {"rows": {"inputs": ["candidates", "weights"], "outputs": ["probability", "attention"]}}}
LIMITS = model_limits("m", INPUTS, META, max_batch_size=0, default_max_elements=1 << 20)
MAX_BYTES = 1 << 16
PLAN = InferPlan(INPUTS, OUTPUTS, LIMITS, MAX_BYTES)


def _request(history: int = 4, candidates: int = 5, groups: int = 1) -> service_pb2.ModelInferRequest:
    rng = np.random.default_rng(history * 100 + candidates)
    arrays = {"history": rng.integers(0, 9, (groups, history)), "mask": rng.random((groups, history), np.float32),
              "candidates": rng.integers(0, 9, candidates), "weights": rng.random((candidates, 3), np.float32)}
    request = service_pb2.ModelInferRequest(model_name="m", id="r1")
    for name, value in arrays.items():
        request.inputs.add(name=name, datatype="INT64" if value.dtype == np.int64 else "FP32", shape=value.shape)
        request.raw_input_contents.append(value.tobytes())
    return request


def _refusal(request: service_pb2.ModelInferRequest) -> str:
    with pytest.raises(InvalidArgument) as refused:
        decode_inputs(request, INPUTS, MAX_BYTES, LIMITS)
    return refused.value.message


def _assert_same_arrays(plan: dict[str, np.ndarray], stepwise: dict[str, np.ndarray]) -> None:
    assert list(plan) == list(stepwise)
    for name, value in stepwise.items():
        assert plan[name].dtype == value.dtype and plan[name].shape == value.shape
        assert plan[name].tobytes() == value.tobytes()


def test_a_well_formed_request_decodes_to_what_the_stepwise_decoder_gives() -> None:
    for history, candidates in [(1, 1), (4, 5), (50, 20), (0, 3)]:
        request = _request(history, candidates)
        decoded = PLAN.decoded_raw(request)
        assert decoded is not None  # the plan decided, not the fallback
        _assert_same_arrays(decoded, decode_inputs(request, INPUTS, MAX_BYTES, LIMITS))


def _mutated(change: str) -> service_pb2.ModelInferRequest:
    request = _request()
    first = request.inputs[0]
    if change == "datatype":
        first.datatype = "INT32"
    elif change == "rank":
        request.inputs[2].shape.append(1)
    elif change == "fixed dimension":
        request.inputs[3].shape[1] = 4
    elif change == "negative dimension":
        first.shape[1] = -4
    elif change == "over an axis limit":
        first.shape[:] = [3, 4]
    elif change == "over the element budget":
        return _request(history=50, candidates=60, groups=2)  # 2 x (2 x 50) + 60 + 60 x 3 = 440 elements
    elif change == "over a product limit":
        return _request(history=40, candidates=30)  # 30 x 40 = 1200 cells > 1000
    elif change == "raw bytes":
        request.raw_input_contents[1] = request.raw_input_contents[1][:-4]
    elif change == "unknown name":
        request.inputs[1].name = "other"
    elif change == "given twice":
        request.inputs[1].name = "history"
    elif change == "missing":
        del request.inputs[3]
        del request.raw_input_contents[3]
    elif change == "raw count":
        del request.raw_input_contents[3]
    elif change == "typed and raw":
        first.contents.int64_contents.append(1)
    return request


REFUSALS = {
    "datatype": "input 'history' has datatype INT32, the model expects INT64",
    "rank": "input 'candidates' has shape [5, 1] but the model expects rank 1",
    "fixed dimension": "input 'weights' dimension 1 is 4, over the limit of 3 of model 'm'",
    "negative dimension": "input 'history' has a negative dimension in shape [1, -4]",
    "over an axis limit": "input 'history' dimension 0 is 3, over the limit of 2 of model 'm'",
    "over the element budget": "the request's inputs hold 440 elements, over the limit of 400 per request of model 'm'",
    "over a product limit":
        "cells (candidates[0] x history[1]) is 1200, over the limit of 1000 per request of model 'm'",
    "raw bytes": "input 'mask': raw content is 12 bytes but shape [1, 4] of FP32 needs 16",
    "unknown name": "'other' is not an input of model 'm' (inputs: history, mask, candidates, weights)",
    "given twice": "input 'history' is given twice",
    "missing": "missing input(s) weights for model 'm'",
    "raw count": "raw_input_contents has 3 entries for 4 inputs",
    "typed and raw": "the request has both typed contents and raw_input_contents; the protocol allows one or the other",
}


@pytest.mark.parametrize("change", sorted(REFUSALS))
def test_every_malformed_request_is_left_to_the_stepwise_decoder_and_its_message(change: str) -> None:
    request = _mutated(change)
    assert PLAN.decoded_raw(request) is None
    assert _refusal(request) == REFUSALS[change]


def test_typed_contents_are_left_to_the_stepwise_decoder() -> None:
    request = service_pb2.ModelInferRequest(model_name="m")
    for name, datatype, shape, values in [("history", "INT64", [1, 2], [3, 4]), ("mask", "FP32", [1, 2], [1.0, 0.0]),
                                          ("candidates", "INT64", [1], [7]), ("weights", "FP32", [1, 3], [1, 2, 3])]:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        (tensor.contents.int64_contents if datatype == "INT64" else tensor.contents.fp32_contents).extend(values)
    assert PLAN.decoded_raw(request) is None
    assert decode_inputs(request, INPUTS, MAX_BYTES, LIMITS)["candidates"].tolist() == [7]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 12), st.integers(0, 12), st.integers(1, 3), st.lists(st.tuples(st.integers(0, 3),
       st.integers(0, 2), st.integers(-2, 70)), max_size=3), st.integers(0, 3), st.booleans())
def test_whatever_the_plan_accepts_the_stepwise_decoder_accepts_identically(
        history, candidates, groups, shape_edits, cut_input, drop_bytes) -> None:
    request = _request(history, candidates, groups)
    for index, axis, size in shape_edits:
        if axis < len(request.inputs[index].shape):
            request.inputs[index].shape[axis] = size
    if drop_bytes:
        request.raw_input_contents[cut_input] = request.raw_input_contents[cut_input][1:]
    decoded = PLAN.decoded_raw(request)
    if decoded is None:
        return
    _assert_same_arrays(decoded, decode_inputs(request, INPUTS, MAX_BYTES, LIMITS))


def test_the_answer_holds_each_asked_output_once_in_raw_contents_and_respects_the_message_limit() -> None:
    outputs = {"probability": np.arange(3, dtype=np.float32), "attention": np.ones((3, 2), np.float32)}
    request = _request()
    assert PLAN.requested(request) == ["probability", "attention"]
    response = PLAN.encode(request, "7", outputs, ["attention"])
    assert (response.model_name, response.model_version, response.id) == ("m", "7", "r1")
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [("attention", "FP32", [3, 2])]
    assert list(response.raw_output_contents) == [outputs["attention"].tobytes()]
    request.outputs.add(name="nope")
    with pytest.raises(InvalidArgument, match=r"unknown output\(s\) nope \(outputs: probability, attention\)"):
        PLAN.requested(request)
    small = InferPlan(INPUTS, OUTPUTS, LIMITS, 20)
    with pytest.raises(ResourceExhausted, match="the answer holds 36 bytes of outputs, over the server's message "
                                                "limit of 20"):
        small.encode(request, "7", outputs, ["probability", "attention"])


def test_the_servicer_refuses_through_the_plan_as_before_and_answers_what_the_model_computed(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics = Metrics()
        manager = ModelManager(ModelRepository(tmp_path), backend=None, metrics=metrics)  # type: ignore[arg-type]
        model = FakeModel("m", lambda inputs: {"probability": inputs["candidates"].astype(np.float32),
                                               "attention": np.zeros((inputs["candidates"].size, 1), np.float32)},
                          meta=META)
        model.inputs, model.outputs = INPUTS, OUTPUTS
        manager.attach(model, BatchingPolicy(max_batch_size=0, max_queue_delay_s=0.0))
        servicer = OipServicer(manager, MAX_BYTES, metrics)
        answer = await servicer.ModelInfer(_request(), None)
        sent = np.frombuffer(_request().raw_input_contents[2], np.int64)
        assert np.frombuffer(answer.raw_output_contents[0], np.float32).tolist() == sent.tolist()
        for change in ("datatype", "over a product limit", "typed and raw"):
            with pytest.raises(InvalidArgument) as refused:
                await servicer.ModelInfer(_mutated(change), None)
            assert refused.value.message == REFUSALS[change]
        await manager.close()

    asyncio.run(scenario())
