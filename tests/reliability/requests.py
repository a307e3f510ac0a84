"""Serialized request factories for the load harness (one per service the scenarios drive)."""

from __future__ import annotations

import numpy as np

from infersuite.protos import ctr_pb2

CTR_SCORE = "/infersuite.ctr.v1.CtrService/Score"


def ctr_requests(n_items: int, n_categories: int, candidates: int = 20, history: int = 20, pool: int = 64):
    """A factory of valid ctr Score requests (a fixed pool, cycled: no generation cost under load)."""
    rng = np.random.default_rng(0)
    payloads = []
    for _ in range(pool):
        request = ctr_pb2.ScoreRequest(
            history_item_ids=rng.integers(1, n_items + 1, history).tolist(),
            history_category_ids=rng.integers(1, n_categories + 1, history).tolist(),
            candidate_item_ids=rng.integers(1, n_items + 1, candidates).tolist(),
            candidate_category_ids=rng.integers(1, n_categories + 1, candidates).tolist())
        payloads.append(request.SerializeToString())

    def make(index: int) -> tuple[str, bytes]:
        return CTR_SCORE, payloads[index % pool]

    return make
