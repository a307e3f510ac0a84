"""A small typed asyncio client for the ctr service."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from protos import ctr_pb2, ctr_pb2_grpc
from services.channel import ChannelSecurity, aio_channel


class CtrClientError(Exception):
    """A failed call: the gRPC status code name and the server's message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Scores:
    click_probabilities: np.ndarray  # (N,)
    activation_weights: np.ndarray | None  # (N, T_used) when explain=True
    history_used: int
    model: str
    model_version: str


@dataclass(frozen=True)
class ScoreInput:
    """One request of a stream: the arguments of `CtrClient.score`."""

    history_item_ids: Sequence[int]
    history_category_ids: Sequence[int]
    candidate_item_ids: Sequence[int]
    candidate_category_ids: Sequence[int]
    explain: bool = False
    model: str = ""


@dataclass(frozen=True)
class StreamedScores:
    """The answer to one request of a stream: its scores, or the error it alone failed with."""

    request_id: str
    scores: Scores | None
    error: CtrClientError | None


_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _request(item: ScoreInput, request_id: str = "") -> ctr_pb2.ScoreRequest:
    return ctr_pb2.ScoreRequest(
        history_item_ids=list(item.history_item_ids), history_category_ids=list(item.history_category_ids),
        candidate_item_ids=list(item.candidate_item_ids),
        candidate_category_ids=list(item.candidate_category_ids),
        explain=item.explain, model=item.model, request_id=request_id)


def _scores(response: ctr_pb2.ScoreResponse) -> Scores:
    weights = (np.array([list(w.weights) for w in response.activation_weights], np.float32)
               if len(response.activation_weights) else None)
    return Scores(np.array(response.click_probabilities, np.float32), weights,
                  response.history_used, response.model.name, response.model.version)


def _streamed(response: ctr_pb2.ScoreStreamResponse) -> StreamedScores:
    if response.WhichOneof("outcome") == "result":
        return StreamedScores(response.request_id, _scores(response.result), None)
    code = _STATUS_CODES.get(response.error.code, grpc.StatusCode.UNKNOWN)
    return StreamedScores(response.request_id, None, CtrClientError(code, response.error.message))


async def _messages(requests: Iterable[tuple[str, ScoreInput]] | AsyncIterable[tuple[str, ScoreInput]],
                    ) -> AsyncIterator[ctr_pb2.ScoreRequest]:
    if isinstance(requests, AsyncIterable):
        async for request_id, item in requests:
            yield _request(item, request_id)
    else:
        for request_id, item in requests:
            yield _request(item, request_id)


class CtrClient:
    """`async with CtrClient("localhost:50051") as ctr: await ctr.score(...)`; `security` adds TLS and a token."""

    def __init__(self, target: str, *, timeout_s: float = 5.0, channel: grpc.aio.Channel | None = None,
                 max_message_bytes: int = 16 * 1024 * 1024, security: ChannelSecurity | None = None):
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        self._channel = channel or aio_channel(target, security, options)
        self._metadata = (security or ChannelSecurity()).metadata
        self._stub = ctr_pb2_grpc.CtrServiceStub(self._channel)
        self._timeout_s = timeout_s

    async def __aenter__(self) -> CtrClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def score(
        self,
        history_item_ids: Sequence[int],
        history_category_ids: Sequence[int],
        candidate_item_ids: Sequence[int],
        candidate_category_ids: Sequence[int],
        *,
        explain: bool = False,
        model: str = "",
        timeout_s: float | None = None,
    ) -> Scores:
        request = _request(ScoreInput(history_item_ids, history_category_ids, candidate_item_ids,
                                      candidate_category_ids, explain, model))
        try:
            response = await self._stub.Score(request, timeout=timeout_s or self._timeout_s,
                                              metadata=self._metadata)
        except grpc.aio.AioRpcError as err:
            raise CtrClientError(err.code(), err.details() or "") from None
        return _scores(response)

    async def score_stream(
        self,
        requests: Iterable[tuple[str, ScoreInput]] | AsyncIterable[tuple[str, ScoreInput]],
        *,
        timeout_s: float | None = None,
    ) -> AsyncIterator[StreamedScores]:
        """Sends (request_id, input) pairs on one ScoreStream call and yields one answer per request,
        in the order the server finishes them. A request's own error comes back in its answer; an
        error of the whole stream raises CtrClientError. timeout_s bounds the whole stream (None: none)."""
        call = self._stub.ScoreStream(_messages(requests), timeout=timeout_s, metadata=self._metadata)
        try:
            async for response in call:
                yield _streamed(response)
        except grpc.aio.AioRpcError as err:
            raise CtrClientError(err.code(), err.details() or "") from None
        finally:
            call.cancel()
