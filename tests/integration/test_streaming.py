"""Streaming inference against a real server: OIP ModelStreamInfer with NVIDIA's own clients
(tritonclient sync `start_stream`/`async_stream_infer` and aio `stream_infer`) and ctr ScoreStream
with the typed client. Streamed answers must equal unary answers; a failed request is answered
in its own response and the stream goes on."""

from __future__ import annotations

import asyncio
import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_sync
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, service_pb2

from infersuite.protos import ctr_pb2
from infersuite.services.ctr import CtrService, CtrSettings
from infersuite.services.ctr.client import CtrClient, ScoreInput
from infersuite.services.runtime import RuntimeSettings, build_server
from tests.reliability import hostile

pytestmark = pytest.mark.integration
MODEL = "din-fp32"
COUNT = 24  # requests per stream: several times the in-flight bound below


@pytest.fixture(scope="module")
async def server_port(tiny_ctr):
    settings = RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1", model_repository=tiny_ctr.repository,
                               stream_max_inflight=4)
    server, port = await build_server(settings, [CtrService(CtrSettings())])
    await server.start()
    await server.wait_ready(timeout=60)
    yield port
    await server.stop(0)


def _ragged(tiny_ctr, count: int = COUNT) -> list[dict[str, np.ndarray]]:
    """DIN inputs of mixed history length (1..8) and candidate count (1..6)."""
    rng, requests = np.random.default_rng(11), []
    for _ in range(count):
        history, candidates = int(rng.integers(1, 9)), int(rng.integers(1, 7))
        requests.append({
            "history_items": rng.integers(1, tiny_ctr.n_items + 1, (1, history)).astype(np.int64),
            "history_categories": rng.integers(1, tiny_ctr.n_categories + 1, (1, history)).astype(np.int64),
            "history_mask": np.ones((1, history), np.float32),
            "candidate_items": rng.integers(1, tiny_ctr.n_items + 1, candidates).astype(np.int64),  # rows layout
            "candidate_categories": rng.integers(1, tiny_ctr.n_categories + 1, candidates).astype(np.int64),
            "candidate_user": np.zeros(candidates, np.int64),
        })
    return requests


def _triton_inputs(arrays: dict[str, np.ndarray], mask_datatype: str = "FP32") -> list[InferInput]:
    inputs = []
    for name, value in arrays.items():
        datatype = "INT64" if value.dtype == np.int64 else mask_datatype
        tensor = InferInput(name, list(value.shape), datatype)
        if datatype == "FP64":  # a wrong datatype on purpose: the server must name it
            tensor.set_data_from_numpy(value.astype(np.float64))
        else:
            tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


async def _unary_scores(port: int, requests: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    client = triton_aio.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        results = [await client.infer(MODEL, _triton_inputs(arrays)) for arrays in requests]
    finally:
        await client.close()
    return [r.as_numpy("click_probability") for r in results]


BAD_ID = "7"  # the request sent with a wrong datatype in each stream


def _sync_stream(port: int, requests: list[dict[str, np.ndarray]]) -> list[tuple[object, object]]:
    """tritonclient's sync streaming API, unchanged: start_stream + async_stream_infer + callback."""
    answers: queue.Queue[tuple[object, object]] = queue.Queue()
    client = triton_sync.InferenceServerClient(f"127.0.0.1:{port}")
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    for i, arrays in enumerate(requests):
        mask = "FP64" if str(i) == BAD_ID else "FP32"
        client.async_stream_infer(MODEL, _triton_inputs(arrays, mask), request_id=str(i),
                                  enable_empty_final_response=i % 2 == 0)
    client.stop_stream()  # closes the request side and waits for every response
    client.close()
    return [answers.get_nowait() for _ in range(answers.qsize())]


async def test_tritonclient_sync_stream_equals_unary_and_goes_on_after_an_error(server_port, tiny_ctr) -> None:
    requests = _ragged(tiny_ctr)
    unary = await _unary_scores(server_port, requests)
    answers = await asyncio.to_thread(_sync_stream, server_port, requests)
    assert len(answers) == COUNT
    errors = [str(error) for result, error in answers if error is not None]
    assert len(errors) == 1 and "'history_mask' has datatype FP64, the model expects FP32" in errors[0], errors
    by_id = {result.get_response().id: result for result, error in answers if error is None}
    assert sorted(by_id, key=int) == [str(i) for i in range(COUNT) if str(i) != BAD_ID]
    for request_id, result in by_id.items():
        np.testing.assert_allclose(result.as_numpy("click_probability"), unary[int(request_id)], rtol=0, atol=1e-6,
                                       equal_nan=False)  # batched with other requests: float order differs
        final = result.get_response().parameters
        assert ("triton_final_response" in final) == (int(request_id) % 2 == 0)  # only when asked, as Triton
        assert int(request_id) % 2 or final["triton_final_response"].bool_param


async def test_tritonclient_aio_stream_equals_unary_and_goes_on_after_an_error(server_port, tiny_ctr) -> None:
    requests = _ragged(tiny_ctr)
    unary = await _unary_scores(server_port, requests)

    async def stream_requests():
        for i, arrays in enumerate(requests):
            mask = "FP64" if str(i) == BAD_ID else "FP32"
            yield {"model_name": MODEL, "inputs": _triton_inputs(arrays, mask), "request_id": str(i)}

    client = triton_aio.InferenceServerClient(f"127.0.0.1:{server_port}")
    try:
        answers = [answer async for answer in client.stream_infer(stream_requests())]
    finally:
        await client.close()
    assert len(answers) == COUNT
    errors = [str(error) for result, error in answers if error is not None]
    assert len(errors) == 1 and "has datatype FP64" in errors[0], errors
    for result, error in answers:
        if error is None:
            request_id = result.get_response().id
            assert request_id != BAD_ID
            np.testing.assert_allclose(result.as_numpy("click_probability"), unary[int(request_id)], rtol=0, atol=1e-6,
                                       equal_nan=False)  # batched with other requests: float order differs


def _score_input(arrays: dict[str, np.ndarray], explain: bool = False) -> ScoreInput:
    return ScoreInput(arrays["history_items"][0].tolist(), arrays["history_categories"][0].tolist(),
                      arrays["candidate_items"].tolist(), arrays["candidate_categories"].tolist(),
                      explain=explain)


async def test_ctr_score_stream_equals_unary_score_with_errors_in_their_own_answers(server_port, tiny_ctr) -> None:
    inputs = [_score_input(arrays, explain=i % 3 == 0) for i, arrays in enumerate(_ragged(tiny_ctr))]
    inputs[5] = ScoreInput([1], [1], [tiny_ctr.n_items + 1], [1])  # out of vocabulary
    async with CtrClient(f"127.0.0.1:{server_port}") as ctr:
        answers = {a.request_id: a async for a in ctr.score_stream((f"r{i}", x) for i, x in enumerate(inputs))}
        assert sorted(answers) == sorted(f"r{i}" for i in range(COUNT))
        failed = answers.pop("r5")
        assert failed.scores is None and failed.error is not None
        assert failed.error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "candidate_item_ids[0]" in failed.error.message and "outside the vocabulary" in failed.error.message
        for request_id, answer in answers.items():
            x = inputs[int(request_id[1:])]
            unary = await ctr.score(x.history_item_ids, x.history_category_ids, x.candidate_item_ids,
                                    x.candidate_category_ids, explain=x.explain)
            assert answer.error is None and answer.scores is not None
            # Batched with other requests, the float summation order may differ: close, never NaN.
            np.testing.assert_allclose(answer.scores.click_probabilities, unary.click_probabilities, rtol=0,
                                       atol=1e-6, equal_nan=False)
            assert answer.scores.history_used == unary.history_used and answer.scores.model == unary.model
            if x.explain:
                np.testing.assert_allclose(answer.scores.activation_weights, unary.activation_weights, rtol=0,
                                           atol=1e-6, equal_nan=False)
            else:
                assert answer.scores.activation_weights is None


def _raw_stream(channel: grpc.aio.Channel, method: str, deserialize):
    return channel.stream_stream(method, request_serializer=lambda b: b, response_deserializer=deserialize)


async def test_an_undecodable_message_gets_an_error_answer_and_the_stream_goes_on(server_port, tiny_ctr) -> None:
    good = ctr_pb2.ScoreRequest(candidate_item_ids=[1], candidate_category_ids=[1], request_id="after")
    garbage = b"\xff\xff\xff\xff"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server_port}") as channel:
        ctr_call = _raw_stream(channel, "/infersuite.ctr.v1.CtrService/ScoreStream",
                               ctr_pb2.ScoreStreamResponse.FromString)
        ctr_answers = [a async for a in ctr_call(iter([garbage, good.SerializeToString()]), timeout=10)]
        oip_call = _raw_stream(channel, "/inference.GRPCInferenceService/ModelStreamInfer",
                               service_pb2.ModelStreamInferResponse.FromString)
        oip_answers = [a async for a in oip_call(iter([garbage]), timeout=10)]
    by_id = {a.request_id: a for a in ctr_answers}
    assert by_id[""].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "not a valid ScoreRequest protobuf message" in by_id[""].error.message
    assert by_id["after"].WhichOneof("outcome") == "result" and len(by_id["after"].result.click_probabilities) == 1
    assert [a.error_message for a in oip_answers] == [
        "a message of the stream is not a valid ModelInferRequest protobuf message"]


async def _unary_status(channel: grpc.aio.Channel, method: str, payload: bytes) -> tuple[str, str]:
    try:
        await channel.unary_unary(method)(payload, timeout=30)
        return "OK", ""
    except grpc.aio.AioRpcError as err:
        return err.code().name, err.details() or ""


def _with_id(payload: bytes, request_id: str) -> bytes:
    """The serialized ScoreRequest with its request_id set (undecodable bytes stay as they are)."""
    try:
        request = ctr_pb2.ScoreRequest.FromString(payload)
    except Exception:  # the undecodable case: it has no id to carry
        return payload
    request.request_id = request_id
    return request.SerializeToString()


async def test_every_hostile_score_gets_in_its_stream_answer_the_status_unary_score_gets(server_port, tiny_ctr) -> None:
    cases = [c for c in hostile.ctr_cases(tiny_ctr.n_items, tiny_ctr.n_categories, CtrSettings().max_candidates)
             if c.method.endswith("/Score")]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server_port}") as channel:
        unary = {c.name: await _unary_status(channel, c.method, c.payload) for c in cases}
        call = _raw_stream(channel, "/infersuite.ctr.v1.CtrService/ScoreStream", ctr_pb2.ScoreStreamResponse.FromString)
        answers = [a async for a in call(iter([_with_id(c.payload, c.name) for c in cases]), timeout=60)]
    assert len(answers) == len(cases)
    streamed = {}
    for answer in answers:
        name = answer.request_id or "ctr undecodable protobuf"
        if answer.WhichOneof("outcome") == "result":
            streamed[name] = ("OK", "")
        else:
            code = next(c for c in grpc.StatusCode if c.value[0] == answer.error.code)
            streamed[name] = (code.name, answer.error.message)
    assert streamed.keys() == unary.keys()
    mismatched = {name: (streamed[name], unary[name]) for name in unary if streamed[name][0] != unary[name][0]}
    assert not mismatched, mismatched
    # The same messages too, but the undecodable one: unary names "the request", a stream "a message of the stream".
    assert all(streamed[n][1] == unary[n][1] for n in unary if n != "ctr undecodable protobuf")
    assert {code for code, _ in streamed.values()} == {"OK", "INVALID_ARGUMENT", "NOT_FOUND"}


async def test_every_hostile_oip_infer_gets_in_its_stream_answer_the_unary_error(server_port) -> None:
    client = triton_aio.InferenceServerClient(f"127.0.0.1:{server_port}")
    try:
        meta = await client.get_model_metadata(MODEL, as_json=True)
    finally:
        await client.close()
    specs = [(i["name"], i["datatype"], len(i["shape"])) for i in meta["inputs"]]
    cases = [c for c in hostile.oip_cases(MODEL, specs) if c.method.endswith("/ModelInfer")]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server_port}") as channel:
        unary = [await _unary_status(channel, c.method, c.payload) for c in cases]
        call = _raw_stream(channel, "/inference.GRPCInferenceService/ModelStreamInfer",
                           service_pb2.ModelStreamInferResponse.FromString)
        # One at a time, so each answer is matched to its request (these requests carry no id).
        streamed = []
        for case in cases:
            streamed += [a.error_message async for a in call(iter([case.payload]), timeout=30)]
    assert len(streamed) == len(cases) and all(code != "OK" for code, _ in unary)
    pairs = [(s, u) for s, u, c in zip(streamed, unary, cases, strict=True) if c.name != "oip ModelInfer undecodable"]
    assert all(s == u[1] and s for s, u in pairs), pairs
