"""The ctr service end to end: real server on port 0, real onnxruntime, real gRPC channel."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infersuite.protos import ctr_pb2, ctr_pb2_grpc
from infersuite.services.ctr import CtrService, CtrSettings
from infersuite.services.ctr.client import CtrClient, CtrClientError
from models.ctr.train import load_checkpoint
from tests.fixtures import serving

pytestmark = pytest.mark.integration
SERVICE_NAME = "infersuite.ctr.v1.CtrService"


@pytest.fixture(scope="module")
async def ctr_server(tiny_ctr):
    async with serving([CtrService(CtrSettings(max_history=10, max_candidates=50))], tiny_ctr.repository) as served:
        yield served.server, served.port


@pytest.fixture
async def client(ctr_server):
    _, port = ctr_server
    async with CtrClient(f"127.0.0.1:{port}") as ctr:
        yield ctr


def _torch_scores(checkpoint, history, cands):
    model = load_checkpoint(checkpoint)
    h = torch.from_numpy(np.stack([history[0]])), torch.from_numpy(np.stack([history[1]]))
    c = torch.from_numpy(np.stack([cands[0]])), torch.from_numpy(np.stack([cands[1]]))
    with torch.no_grad():
        probability, weights = model(h[0], h[1], torch.ones(1, len(history[0])), c[0], c[1])
    return probability[0].numpy(), weights[0].numpy()


async def test_health_reaches_serving_for_the_server_and_the_service(ctr_server) -> None:
    _, port = ctr_server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_scores_match_the_torch_model(client, tiny_ctr) -> None:
    rng = np.random.default_rng(0)
    history = rng.integers(1, tiny_ctr.n_items + 1, 8), rng.integers(1, tiny_ctr.n_categories + 1, 8)
    cands = rng.integers(1, tiny_ctr.n_items + 1, 30), rng.integers(1, tiny_ctr.n_categories + 1, 30)
    scores = await client.score(*history, *cands, explain=True)
    want_p, want_w = _torch_scores(tiny_ctr.checkpoint, history, cands)
    assert scores.click_probabilities.shape == (30,) and scores.activation_weights.shape == (30, 8)
    np.testing.assert_allclose(scores.click_probabilities, want_p, atol=1e-5)
    np.testing.assert_allclose(scores.activation_weights, want_w, atol=1e-5)
    assert scores.model == "din-fp32" and scores.model_version == "1"


async def test_long_history_is_truncated_to_the_most_recent(client, tiny_ctr) -> None:
    items, cats = list(range(1, 26)), [1 + i % tiny_ctr.n_categories for i in range(25)]
    long = await client.score(items, cats, [5, 6], [1, 2], explain=True)
    recent = await client.score(items[-10:], cats[-10:], [5, 6], [1, 2])
    assert long.history_used == 10 and long.activation_weights.shape == (2, 10)
    np.testing.assert_allclose(long.click_probabilities, recent.click_probabilities, atol=1e-6)


async def test_empty_history_is_valid(client) -> None:
    scores = await client.score([], [], [1, 2, 3], [1, 1, 1], explain=True)
    assert scores.history_used == 0 and scores.click_probabilities.shape == (3,)
    assert np.all((scores.click_probabilities > 0) & (scores.click_probabilities < 1))


BAD_REQUESTS = {
    "no candidates": (ctr_pb2.ScoreRequest(history_item_ids=[1], history_category_ids=[1]),
                      "candidate_item_ids is empty"),
    "history arrays differ": (ctr_pb2.ScoreRequest(history_item_ids=[1, 2], history_category_ids=[1],
                                                   candidate_item_ids=[1], candidate_category_ids=[1]),
                              "history_item_ids has 2 ids but history_category_ids has 1"),
    "candidate arrays differ": (ctr_pb2.ScoreRequest(candidate_item_ids=[1, 2], candidate_category_ids=[1]),
                                "candidate_item_ids has 2 ids but candidate_category_ids has 1"),
    "item out of vocabulary": (ctr_pb2.ScoreRequest(candidate_item_ids=[10**9], candidate_category_ids=[1]),
                               "candidate_item_ids[0]=1000000000 is outside the vocabulary"),
    "category out of vocabulary": (ctr_pb2.ScoreRequest(history_item_ids=[1], history_category_ids=[999],
                                                        candidate_item_ids=[1], candidate_category_ids=[1]),
                                   "history_category_ids[0]=999 is outside the vocabulary"),
    "negative id": (ctr_pb2.ScoreRequest(candidate_item_ids=[-3], candidate_category_ids=[1]),
                    "candidate_item_ids[0]=-3"),
    "too many candidates": (ctr_pb2.ScoreRequest(candidate_item_ids=[1] * 51, candidate_category_ids=[1] * 51),
                            "51 candidates, more than the maximum of 50"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
async def test_bad_input_gets_invalid_argument_and_the_server_keeps_serving(ctr_server, case) -> None:
    _, port = ctr_server
    request, message = BAD_REQUESTS[case]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ctr_pb2_grpc.CtrServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Score(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in err.value.details()
        good = await stub.Score(ctr_pb2.ScoreRequest(history_item_ids=[1], history_category_ids=[1],
                                                     candidate_item_ids=[2], candidate_category_ids=[1]), timeout=5)
        assert len(good.click_probabilities) == 1


async def test_unknown_model_is_not_found(client) -> None:
    with pytest.raises(CtrClientError) as err:
        await client.score([1], [1], [1], [1], model="din-int3")
    assert err.value.code == grpc.StatusCode.NOT_FOUND


async def test_metrics_pass_promtool_and_count_requests_by_code(ctr_server, client) -> None:
    server, _ = ctr_server
    await client.score([1], [1], [1], [1])
    with pytest.raises(CtrClientError):
        await client.score([1], [1], [], [])
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'infersuite_requests_total{code="OK",method="Score",service="infersuite.ctr.v1.CtrService"}' in text
    assert 'code="INVALID_ARGUMENT",method="Score"' in text
    assert 'infersuite_model_compute_duration_seconds_count{model="din-fp32",version="1"}' in text
    assert 'infersuite_model_ready{model="din-fp32"} 1.0' in text
    assert "infersuite_ctr_candidates_bucket" in text and "infersuite_ctr_history_length_bucket" in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


async def test_health_is_not_serving_while_a_model_cannot_load(tmp_path) -> None:
    async with serving([CtrService(CtrSettings())], tmp_path, metrics_port=-1, wait_ready=False) as served, \
            grpc.aio.insecure_channel(served.address) as channel:
        with pytest.raises(Exception, match="not in the model repository"):
            await served.server.wait_ready(timeout=30)
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await ctr_pb2_grpc.CtrServiceStub(channel).Score(
                ctr_pb2.ScoreRequest(candidate_item_ids=[1], candidate_category_ids=[1]), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
