"""protobuf <-> handler types for the ctr service."""

from __future__ import annotations

import grpc
import numpy as np

from infersuite.protos import common_pb2, ctr_pb2
from infersuite.services.ctr.handler import ScoreKeys, ScoreQuery, ScoreResult


def _ids(values: object) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


def _keys(request: ctr_pb2.ScoreRequest) -> ScoreKeys | None:
    """The string ids, or None when the request sends none (the repeated fields themselves: nothing is
    copied before the handler has checked their counts)."""
    keys = ScoreKeys(request.history_item_keys, request.history_category_keys, request.candidate_item_keys,
                     request.candidate_category_keys)
    return keys if any(len(field) for field in vars(keys).values()) else None


def query_from_proto(request: ctr_pb2.ScoreRequest) -> ScoreQuery:
    return ScoreQuery(
        history_items=_ids(request.history_item_ids),
        history_categories=_ids(request.history_category_ids),
        candidate_items=_ids(request.candidate_item_ids),
        candidate_categories=_ids(request.candidate_category_ids),
        explain=request.explain,
        model=request.model,
        keys=_keys(request),
    )


def result_to_proto(result: ScoreResult) -> ctr_pb2.ScoreResponse:
    response = ctr_pb2.ScoreResponse(
        click_probabilities=result.click_probabilities.tolist(),
        history_used=result.history_used,
        model=common_pb2.ModelRef(name=result.model, version=result.model_version),
    )
    if result.activation_weights is not None:
        response.activation_weights.extend(
            ctr_pb2.ActivationWeights(weights=row.tolist()) for row in result.activation_weights)
    return response


def stream_error_to_proto(request: ctr_pb2.ScoreRequest | None, code: grpc.StatusCode,
                          message: str) -> ctr_pb2.ScoreStreamResponse:
    """A failed request of a ScoreStream (None: a message that could not be decoded)."""
    return ctr_pb2.ScoreStreamResponse(
        request_id=request.request_id if request is not None else "",
        error=common_pb2.Status(code=code.value[0], message=message))
