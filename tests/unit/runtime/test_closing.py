"""The server's stop as its calls see it (handler_wrapper.Closing): refused before anything runs, health exempt."""

from __future__ import annotations

import pytest

from infersuite.services.runtime.errors import Unavailable
from infersuite.services.runtime.handler_wrapper import SHUTTING_DOWN, Closing, Undecodable, per_method, refuse_early
from infersuite.services.runtime.metrics import Metrics


def test_a_refusing_stop_answers_unavailable_first_and_counts_the_refusal() -> None:
    closing = Closing()
    refuse_early(None, None, object(), closing)  # not stopping: the call goes on
    closing.refusing = True
    # Refused before the request is looked at: an undecodable one gets the stop's answer, not INVALID_ARGUMENT.
    with pytest.raises(Unavailable, match="shutting down") as err:
        refuse_early(None, None, Undecodable("ModelInferRequest"), closing)
    assert str(err.value) == SHUTTING_DOWN and closing.refused == 1 and closing.last_refusal > 0


def test_health_methods_are_never_refused_by_the_stop() -> None:
    closing, metrics = Closing(), Metrics()
    assert per_method(metrics, None, "/grpc.health.v1.Health/Check", closing)[2] is None
    assert per_method(metrics, None, "/grpc.health.v1.Health/Watch", closing)[2] is None
    assert per_method(metrics, None, "/inference.GRPCInferenceService/ModelInfer", closing)[2] is closing
