"""A small typed asyncio client for the ctr service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from protos import ctr_pb2, ctr_pb2_grpc


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


class CtrClient:
    """`async with CtrClient("localhost:50051") as ctr: await ctr.score(...)`."""

    def __init__(self, target: str, *, timeout_s: float = 5.0, channel: grpc.aio.Channel | None = None,
                 max_message_bytes: int = 16 * 1024 * 1024):
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        self._channel = channel or grpc.aio.insecure_channel(target, options=options)
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
        request = ctr_pb2.ScoreRequest(
            history_item_ids=list(history_item_ids), history_category_ids=list(history_category_ids),
            candidate_item_ids=list(candidate_item_ids), candidate_category_ids=list(candidate_category_ids),
            explain=explain, model=model)
        try:
            response = await self._stub.Score(request, timeout=timeout_s or self._timeout_s)
        except grpc.aio.AioRpcError as err:
            raise CtrClientError(err.code(), err.details() or "") from None
        weights = (np.array([list(w.weights) for w in response.activation_weights], np.float32)
                   if explain else None)
        return Scores(np.array(response.click_probabilities, np.float32), weights,
                      response.history_used, response.model.name, response.model.version)
