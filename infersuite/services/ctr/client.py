"""A small typed asyncio client for the ctr service, on the suite's one client base (infersuite/services/client.py)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Unpack

import numpy as np

from infersuite.protos import ctr_pb2, ctr_pb2_grpc
from infersuite.services.client import AsyncClient, AsyncClientOptions, InferSuiteClientError, each


class CtrClientError(InferSuiteClientError):
    """InferSuiteClientError raised by CtrClient (the name user code catches since the first release)."""


@dataclass(frozen=True)
class Scores:
    click_probabilities: np.ndarray  # (N,)
    activation_weights: np.ndarray | None  # (N, T_used) when explain=True
    history_used: int
    model: str
    model_version: str


Ids = Sequence[int] | Sequence[str]  # integer ids, or the string ids of a model whose vocabulary holds strings


@dataclass(frozen=True)
class ScoreInput:
    """One request of a stream: the arguments of `CtrClient.score`."""

    history_item_ids: Ids
    history_category_ids: Ids
    candidate_item_ids: Ids
    candidate_category_ids: Ids
    explain: bool = False
    model: str = ""


@dataclass(frozen=True)
class StreamedScores:
    """The answer to one request of a stream: its scores, or the error it alone failed with."""

    request_id: str
    scores: Scores | None
    error: CtrClientError | None


_ID_FIELDS = ("history_item_ids", "history_category_ids", "candidate_item_ids", "candidate_category_ids")


def _request(item: ScoreInput, request_id: str = "") -> ctr_pb2.ScoreRequest:
    """Integer ids go to the `*_ids` fields, strings (str or numpy str) to the `*_keys` fields."""
    fields = {}
    for name in _ID_FIELDS:
        values = list(getattr(item, name))
        strings = bool(values) and isinstance(values[0], str)
        fields[name.replace("_ids", "_keys") if strings else name] = values
    return ctr_pb2.ScoreRequest(**fields, explain=item.explain, model=item.model, request_id=request_id)


def _scores(response: ctr_pb2.ScoreResponse) -> Scores:
    weights = (np.array([list(w.weights) for w in response.activation_weights], np.float32)
               if len(response.activation_weights) else None)
    return Scores(np.array(response.click_probabilities, np.float32), weights,
                  response.history_used, response.model.name, response.model.version)


def _streamed(response: ctr_pb2.ScoreStreamResponse) -> StreamedScores:
    if response.WhichOneof("outcome") == "result":
        return StreamedScores(response.request_id, _scores(response.result), None)
    error = CtrClientError.from_status(response.error.code, response.error.message)
    return StreamedScores(response.request_id, None, error)


async def _messages(requests: Iterable[tuple[str, ScoreInput]] | AsyncIterable[tuple[str, ScoreInput]],
                    ) -> AsyncIterator[ctr_pb2.ScoreRequest]:
    async for request_id, item in each(requests):
        yield _request(item, request_id)


class CtrClient(AsyncClient):
    """`async with CtrClient("localhost:50051") as ctr: await ctr.score(...)`; options (security,
    timeout_s=5.0, stream_timeout_s=None, ...): `infersuite.services.client.AsyncClientOptions`."""

    error = CtrClientError

    def __init__(self, target: str, **options: Unpack[AsyncClientOptions]):
        super().__init__(target, **options)
        self._stub = ctr_pb2_grpc.CtrServiceStub(self._channel)

    async def score(
        self,
        history_item_ids: Ids,
        history_category_ids: Ids,
        candidate_item_ids: Ids,
        candidate_category_ids: Ids,
        *,
        explain: bool = False,
        model: str = "",
        timeout_s: float | None = None,
    ) -> Scores:
        """Scores the candidates for the history. Ids are integers, or strings (asins, SKUs, UUIDs) for a
        model whose vocabulary holds strings: `score(["sku-1"], ["shoes"], ["sku-9"], ["shoes"])` sends
        them in the request's `*_keys` fields; a model with integer ids refuses them (CtrClientError)."""
        request = _request(ScoreInput(history_item_ids, history_category_ids, candidate_item_ids,
                                      candidate_category_ids, explain, model))
        return _scores(await self._unary(self._stub.Score, request, timeout_s))

    def score_stream(
        self,
        requests: Iterable[tuple[str, ScoreInput]] | AsyncIterable[tuple[str, ScoreInput]],
        *,
        timeout_s: float | None = None,
    ) -> AsyncIterator[StreamedScores]:
        """Sends (request_id, input) pairs on one ScoreStream call as they are produced and yields one
        answer per request, in the order the server finishes them. A request's own error comes back in
        its answer; an error of the whole stream raises CtrClientError. timeout_s bounds the whole
        stream (None: the client's stream_timeout_s, by default no deadline)."""
        responses = self._stream(self._stub.ScoreStream, _messages(requests), timeout_s)
        return (_streamed(response) async for response in responses)
