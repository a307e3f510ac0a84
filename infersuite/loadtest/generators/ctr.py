"""`ctr`: Deep Interest Network scoring requests shaped like the synthetic click data.

A user has a behaviour history of 1..max_history (item, category) pairs, uniform like the
synthetic log (models/ctr/data.py), and is shown min..max candidates. Items 1..n_items belong
to categories 1..n_categories by a seeded round-robin permutation, as in the synthetic world.
The vocabulary comes from --param n_items/n_categories, or from the model's meta.json
(--param meta=PATH, or --param repository=DIR with --param model=NAME), default 600/30. A model trained on
a user's click log (meta.json `vocabulary.external`) takes the ids of the user's systems: the requests
then draw those (integers in the *_ids fields, strings in the *_keys fields), items and categories
independently (the log's item -> category map is not in meta.json).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from infersuite.loadtest.generators.base import GeneratorError, RequestPool, check_unknown, int_param, register

DEFAULT_MODEL = "din"  # the family alias (<repository>/aliases.json) the ctr service answers with
FALLBACK_MODEL = "din-fp32"
PARAMS = {"n_items", "n_categories", "meta", "repository", "model", "max_history",
          "min_candidates", "max_candidates", "explain"}


@dataclass(frozen=True)
class CtrShape:
    """What a Score response must look like for one request."""

    candidates: int
    history: int
    explain: bool


@dataclass(frozen=True)
class Vocabulary:
    n_items: int
    n_categories: int
    source: str  # where it came from
    items: list | None = None  # the external ids (integers or strings) a user's model takes, else None
    categories: list | None = None

    @property
    def string_ids(self) -> bool:
        return self.items is not None and isinstance(self.items[0], str)


def _vocabulary(params: dict[str, str]) -> Vocabulary:
    meta_path = params.get("meta")
    if meta_path is None and "repository" in params:
        model_dir = Path(params["repository"]) / resolve_model(Path(params["repository"]), params.get("model"))
        versions = sorted((p for p in model_dir.glob("*/meta.json") if p.parent.name.isdigit()),
                          key=lambda p: int(p.parent.name))
        if not versions:
            raise GeneratorError(f"ctr: no <version>/meta.json under {model_dir}")
        meta_path = str(versions[-1])
    if meta_path is not None:
        try:
            vocabulary = json.loads(Path(meta_path).read_text())["vocabulary"]
            external = vocabulary.get("external")
            if external is not None:
                items, categories = list(external["items"]), list(external["categories"])
                if not items or not categories:
                    raise ValueError("vocabulary.external lists no items or no categories")
                return Vocabulary(len(items), len(categories), meta_path, items, categories)
            return Vocabulary(int(vocabulary["n_items"]), int(vocabulary["n_categories"]), meta_path)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise GeneratorError(f"ctr: cannot read the vocabulary from {meta_path}: {err}") from None
    return Vocabulary(int_param(params, "n_items", 600), int_param(params, "n_categories", 30), "parameters")


def resolve_model(repository: Path, name: str | None) -> str:
    """A model name or alias -> the model directory name, as the runtime resolves aliases.json."""
    aliases_file = repository / "aliases.json"
    try:
        aliases = json.loads(aliases_file.read_text()) if aliases_file.is_file() else {}
    except ValueError:
        aliases = {}
    resolved = str(aliases.get(name or DEFAULT_MODEL, name or DEFAULT_MODEL))
    return resolved if name or (repository / resolved).is_dir() else FALLBACK_MODEL


_ID_FIELDS = ("history_item_ids", "history_category_ids", "candidate_item_ids", "candidate_category_ids")
_KEY_FIELDS = ("history_item_keys", "history_category_keys", "candidate_item_keys", "candidate_category_keys")


class CtrGenerator:
    name = "ctr"
    grpc_service = "infersuite.ctr.v1.CtrService"

    def __init__(self, params: dict[str, str]):
        check_unknown(params, PARAMS, self.name)
        self.vocabulary = _vocabulary(params)
        self.n_items, self.n_categories = self.vocabulary.n_items, self.vocabulary.n_categories
        self.max_history = int_param(params, "max_history", 50)
        self.min_candidates = int_param(params, "min_candidates", 10)
        self.max_candidates = int_param(params, "max_candidates", 100)
        if self.min_candidates > self.max_candidates:
            raise GeneratorError("ctr: min_candidates must be <= max_candidates")
        self.explain = params.get("explain", "false").lower() in ("1", "true", "yes")
        self.model = params.get("model", "")  # empty: the service's default model

    async def build(self, channel: grpc.aio.Channel, rng: np.random.Generator, size: int) -> RequestPool:
        from infersuite.protos import ctr_pb2

        item_category = np.zeros(self.n_items + 1, np.int64)  # (n_items + 1,), [0] = padding
        item_category[1:] = rng.permutation(np.arange(self.n_items) % self.n_categories + 1)
        payloads, shapes = [], []
        vocabulary = self.vocabulary
        for _ in range(size):
            history = rng.integers(1, self.n_items + 1, int(rng.integers(1, self.max_history + 1)))
            candidates = rng.integers(1, self.n_items + 1,
                                      int(rng.integers(self.min_candidates, self.max_candidates + 1)))
            if vocabulary.items is not None and vocabulary.categories is not None:  # the user's own ids
                ids = [[vocabulary.items[i - 1] for i in history.tolist()],
                       [vocabulary.categories[c] for c in rng.integers(0, self.n_categories, history.size).tolist()],
                       [vocabulary.items[i - 1] for i in candidates.tolist()],
                       [vocabulary.categories[c] for c in rng.integers(0, self.n_categories, candidates.size).tolist()]]
                request = ctr_pb2.ScoreRequest(explain=self.explain, model=self.model)
                for field, values in zip(_KEY_FIELDS if vocabulary.string_ids else _ID_FIELDS, ids, strict=True):
                    getattr(request, field).extend(values)
            else:
                request = ctr_pb2.ScoreRequest(
                    history_item_ids=history.tolist(), history_category_ids=item_category[history].tolist(),
                    candidate_item_ids=candidates.tolist(),
                    candidate_category_ids=item_category[candidates].tolist(), explain=self.explain,
                    model=self.model)
            payloads.append(request.SerializeToString())
            shapes.append(CtrShape(candidates.size, history.size, self.explain))
        description = {"n_items": self.n_items, "n_categories": self.n_categories,
                       "vocabulary_from": vocabulary.source,
                       "ids": ("the model's string ids" if vocabulary.string_ids else "the model's integer ids")
                       if vocabulary.items is not None else "rows 1..n", "history": [1, self.max_history],
                       "candidates": [self.min_candidates, self.max_candidates], "explain": self.explain,
                       "model": self.model or "(service default)"}
        return RequestPool("/infersuite.ctr.v1.CtrService/Score", payloads, shapes, check_score, description)


def check_score(shape: CtrShape, response: bytes) -> str | None:
    """N probabilities in [0, 1] for N candidates; 1 <= history_used <= the history sent."""
    from infersuite.protos import ctr_pb2

    scores = ctr_pb2.ScoreResponse.FromString(response)
    probabilities = scores.click_probabilities
    if len(probabilities) != shape.candidates:
        return "ctr: wrong number of click probabilities"
    if not all(0.0 <= p <= 1.0 for p in probabilities) or any(math.isnan(p) for p in probabilities):
        return "ctr: click probability outside [0, 1]"
    if not 1 <= scores.history_used <= shape.history:
        return "ctr: history_used outside [1, history sent]"
    if shape.explain and len(scores.activation_weights) != shape.candidates:
        return "ctr: wrong number of activation weight rows"
    return None


register("ctr", "DIN Score: histories 1..50, 10..100 candidates (--param n_items, n_categories, meta, "
         "repository, model, explain)")(CtrGenerator)
