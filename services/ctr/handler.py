"""CTR scoring domain logic (no grpc): validation, truncation, and one DIN execution.

Out-of-vocabulary policy: ids outside a model's vocabulary are REJECTED with INVALID_ARGUMENT
naming the field and index. An out-of-vocabulary bucket would score unknown items with an
embedding the model never learned, a silent wrong answer; a caller that wants that behaviour
can map unknown ids itself. Ids start at 1; 0 is the model's padding id and is rejected too.

A model trained on a user's click log (models/ctr/user_data.py) ships the user's own ids in
meta.json (`vocabulary.external`): requests send those ids, mapped here to embedding rows, and an
unknown id is refused (oov `reject`, naming the field, index and id) or scored with the row the
model learned for rare ids (oov `bucket`, chosen at training).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from modelmeta.families import ExternalIds
from services.ctr.settings import CtrSettings
from services.runtime import InvalidArgument, NotFound, Runtime
from services.runtime.model_manager import ModelSet


@dataclass(frozen=True)
class ScoreQuery:
    history_items: np.ndarray  # (T,) int64, oldest first
    history_categories: np.ndarray  # (T,) int64
    candidate_items: np.ndarray  # (N,) int64
    candidate_categories: np.ndarray  # (N,) int64
    explain: bool = False
    model: str = ""


@dataclass(frozen=True)
class ScoreResult:
    click_probabilities: np.ndarray  # (N,) float32
    activation_weights: np.ndarray | None  # (N, T_used) float32 when explained
    history_used: int
    model: str
    model_version: str


def _check_pair(items: np.ndarray, categories: np.ndarray, prefix: str) -> None:
    if items.shape != categories.shape:
        raise InvalidArgument(
            f"{prefix}_item_ids has {items.size} ids but {prefix}_category_ids has "
            f"{categories.size}: the arrays must pair up index by index")


def _check_vocabulary(ids: np.ndarray, field: str, size: int) -> None:
    bad = np.flatnonzero((ids < 1) | (ids > size))
    if bad.size:
        i = int(bad[0])
        raise InvalidArgument(
            f"{field}[{i}]={int(ids[i])} is outside the vocabulary [1, {size}] "
            f"({bad.size} id(s) out of range; unknown ids are rejected, not bucketed)")


@dataclass(frozen=True)
class ModelVocabulary:
    n_items: int
    n_categories: int
    external: ExternalIds | None  # the user's own ids (models/ctr/user_data.py), or None: ids are rows


def vocabularies(models: ModelSet) -> dict[str, ModelVocabulary]:
    """Each model's vocabulary (meta.json), rebuilt with every model set; refuses a set without one."""
    found = {}
    for name in models.names:
        vocab = models.get(name).meta.get("vocabulary", {})
        sizes = {key: vocab.get(key) for key in ("n_items", "n_categories")}
        if not all(isinstance(size, int) and size > 0 for size in sizes.values()):
            raise ValueError(f"{name}'s meta.json vocabulary {vocab} lacks positive n_items and n_categories")
        external = ExternalIds.model_validate(vocab["external"]) if vocab.get("external") else None
        found[name] = ModelVocabulary(sizes["n_items"], sizes["n_categories"], external)
    return found


# (ScoreQuery attribute, vocabulary table, request field) of every id array
_ID_FIELDS: tuple[tuple[str, Literal["items", "categories"], str], ...] = (
    ("history_items", "items", "history_item_ids"), ("history_categories", "categories", "history_category_ids"),
    ("candidate_items", "items", "candidate_item_ids"),
    ("candidate_categories", "categories", "candidate_category_ids"))


def _external_rows(vocab: ExternalIds, kind: Literal["items", "categories"], ids: np.ndarray,
                   field: str) -> np.ndarray:
    rows, known = vocab.rows(kind, ids)
    if vocab.oov == "reject" and not known.all():
        i = int(np.argmin(known))
        raise InvalidArgument(f"{field}[{i}]={int(ids[i])} is not in the model's vocabulary "
                              f"({int((~known).sum())} unknown id(s); this model was trained to reject them)")
    return rows


class CtrHandler:
    def __init__(self, settings: CtrSettings, runtime: Runtime):
        self._settings = settings
        self._served = runtime.service_models("ctr", vocabularies)
        self._candidates = runtime.metrics.histogram(
            "infersuite_ctr_candidates", "Candidates per Score request.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
        self._history = runtime.metrics.histogram(
            "infersuite_ctr_history_length", "Behaviours used per Score request (after truncation).",
            buckets=(0, 1, 5, 10, 20, 50, 100, 200, 500))

    @property
    def model_names(self) -> list[str]:
        return [self._settings.model, *self._settings.extra_models]

    def _validate(self, query: ScoreQuery, vocab: ModelVocabulary) -> ScoreQuery:
        """The query with embedding rows for ids (the user's own ids mapped when the model has them)."""
        _check_pair(query.history_items, query.history_categories, "history")
        _check_pair(query.candidate_items, query.candidate_categories, "candidate")
        n = query.candidate_items.size
        if n == 0:
            raise InvalidArgument("candidate_item_ids is empty: at least one candidate is required")
        if n > self._settings.max_candidates:
            raise InvalidArgument(
                f"candidate_item_ids has {n} candidates, more than the maximum of "
                f"{self._settings.max_candidates}")
        if vocab.external is not None:
            rows = {attribute: _external_rows(vocab.external, kind, getattr(query, attribute), field)
                    for attribute, kind, field in _ID_FIELDS}
            query = replace(query, history_items=rows["history_items"], history_categories=rows["history_categories"],
                            candidate_items=rows["candidate_items"], candidate_categories=rows["candidate_categories"])
        for attribute, kind, field in _ID_FIELDS:
            size = vocab.n_items if kind == "items" else vocab.n_categories
            _check_vocabulary(getattr(query, attribute), field, size)
        return query

    def _model_name(self, requested: str, models: ModelSet) -> str:
        """The default model, or a requested one among those served (by name or alias)."""
        name = requested or self._settings.model
        if name not in models:
            raise NotFound(f"model {name!r} is not served by ctr "
                           f"(served: {', '.join(sorted({*self.model_names, *models.names}))})")
        return name

    async def score(self, query: ScoreQuery) -> ScoreResult:
        with self._served.use() as snapshot:  # the vocabulary checked is the one of the model that runs
            return await self._score(query, snapshot.models, snapshot.state)

    async def _score(self, query: ScoreQuery, models: ModelSet,
                     vocabularies: dict[str, ModelVocabulary]) -> ScoreResult:
        name = self._model_name(query.model, models)
        model = models.get(name)
        query = self._validate(query, vocabularies[model.name])
        keep = self._settings.max_history
        items, categories = query.history_items[-keep:], query.history_categories[-keep:]
        used = int(items.size)
        # An empty history becomes one padding slot with mask 0: the graph never sees T=0.
        width = max(used, 1)
        history_items = np.zeros((1, width), np.int64)  # (1, T)
        history_categories = np.zeros((1, width), np.int64)
        mask = np.zeros((1, width), np.float32)
        history_items[0, :used], history_categories[0, :used], mask[0, :used] = items, categories, 1.0
        n = query.candidate_items.size
        # The rows layout (models/ctr/din_rows.py): one row per candidate, each pointing at user 0.
        outputs = await models.infer(name, {
            "history_items": history_items,
            "history_categories": history_categories,
            "history_mask": mask,
            "candidate_items": query.candidate_items.astype(np.int64, copy=False),  # (N,)
            "candidate_categories": query.candidate_categories.astype(np.int64, copy=False),
            "candidate_user": np.zeros(n, np.int64),
        }, None if query.explain else ["click_probability"])  # the weights are computed only when asked
        self._candidates.observe(query.candidate_items.size)
        self._history.observe(used)
        weights = outputs["activation_weights"][:, :used] if query.explain else None  # (N, T)
        return ScoreResult(outputs["click_probability"], weights, used, model.name, model.version)
