"""The benchmark's requests: DIN request mixes as ctr Score messages, OIP ModelInfer messages (the
rows layout, raw contents, as tritonclient sends them) and bare onnxruntime feeds, all from one seed.

Mixes (history length, candidates per request, uniform): "ranking" 1..50 x 20..100 (compute-bound:
DIN's work grows with candidates x behaviours) and "small" 1..20 x 1..10 (overhead-bound).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tritonclient.grpc import service_pb2

from infersuite.protos import ctr_pb2
from infersuite.services.runtime.tensors import NUMPY_TO_DATATYPE

MIXES = {"ranking": ((1, 50), (20, 100)), "small": ((1, 20), (1, 10))}
MODEL = "din-fp32"


@dataclass(frozen=True)
class DinRequest:
    history_items: np.ndarray  # (T,)
    history_categories: np.ndarray  # (T,)
    candidate_items: np.ndarray  # (N,)
    candidate_categories: np.ndarray  # (N,)

    def feeds(self) -> dict[str, np.ndarray]:
        """One user in the rows layout (models/ctr/din_rows.py)."""
        t, n = self.history_items.size, self.candidate_items.size
        return {"history_items": self.history_items.reshape(1, t), "history_categories":
                self.history_categories.reshape(1, t), "history_mask": np.ones((1, t), np.float32),
                "candidate_items": self.candidate_items, "candidate_categories": self.candidate_categories,
                "candidate_user": np.zeros(n, np.int64)}

    def score_request(self) -> bytes:
        return ctr_pb2.ScoreRequest(
            history_item_ids=self.history_items.tolist(), history_category_ids=self.history_categories.tolist(),
            candidate_item_ids=self.candidate_items.tolist(),
            candidate_category_ids=self.candidate_categories.tolist()).SerializeToString()

    def infer_request(self, model: str = MODEL) -> bytes:
        request = service_pb2.ModelInferRequest(model_name=model)
        for name, value in self.feeds().items():
            request.inputs.add(name=name, datatype=NUMPY_TO_DATATYPE[value.dtype], shape=list(value.shape))
            request.raw_input_contents.append(np.ascontiguousarray(value).tobytes())
        return request.SerializeToString()


def make_requests(mix: str, count: int, n_items: int, n_categories: int, seed: int = 0) -> list[DinRequest]:
    rng = np.random.default_rng(seed)
    (t_lo, t_hi), (n_lo, n_hi) = MIXES[mix]
    requests = []
    for _ in range(count):
        t, n = int(rng.integers(t_lo, t_hi + 1)), int(rng.integers(n_lo, n_hi + 1))
        requests.append(DinRequest(rng.integers(1, n_items + 1, t), rng.integers(1, n_categories + 1, t),
                                   rng.integers(1, n_items + 1, n), rng.integers(1, n_categories + 1, n)))
    return requests


def mean_candidates(requests: list[DinRequest]) -> float:
    return float(np.mean([r.candidate_items.size for r in requests]))
