"""CTR scoring domain logic (no grpc): validation, truncation, and one DIN execution.

Out-of-vocabulary policy: ids outside a model's vocabulary are REJECTED with INVALID_ARGUMENT
naming the field and index. An out-of-vocabulary bucket would score unknown items with an
embedding the model never learned, a silent wrong answer; a caller that wants that behaviour
can map unknown ids itself. Ids start at 1; 0 is the model's padding id and is rejected too.

A model trained on a user's click log (models/ctr/user_data.py) ships the user's own ids in
meta.json (`vocabulary.external`): requests send those ids, mapped here to embedding rows, and an
unknown id is refused (oov `reject`, naming the field, index and id) or scored with the row the
model learned for rare ids (oov `bucket`, chosen at training). A model whose vocabulary holds strings
(a click log trained with `--ids string`) takes them in Score's `*_keys` fields (`ScoreKeys`) and in
OIP BYTES tensors (infersuite/services/ctr/string_ids.py); the number of ids and each id's length are checked
before any is looked up, and a model with integer ids refuses string ids, saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from infersuite.modelmeta.families import ExternalIds
from infersuite.services.ctr.settings import CtrSettings
from infersuite.services.runtime import InvalidArgument, NotFound, Runtime
from infersuite.services.runtime.model_manager import ModelSet


@dataclass(frozen=True)
class ScoreKeys:
    """String ids (Score's `*_keys` fields), sent instead of the integer arrays of a ScoreQuery."""

    history_items: Sequence[str]  # (T,) oldest first
    history_categories: Sequence[str]  # (T,)
    candidate_items: Sequence[str]  # (N,)
    candidate_categories: Sequence[str]  # (N,)


@dataclass(frozen=True)
class ScoreQuery:
    history_items: np.ndarray  # (T,) int64, oldest first
    history_categories: np.ndarray  # (T,) int64
    candidate_items: np.ndarray  # (N,) int64
    candidate_categories: np.ndarray  # (N,) int64
    explain: bool = False
    model: str = ""
    keys: ScoreKeys | None = None  # string ids instead of the four arrays (which are then empty)


@dataclass(frozen=True)
class ScoreResult:
    click_probabilities: np.ndarray  # (N,) float32
    activation_weights: np.ndarray | None  # (N, T_used) float32 when explained
    history_used: int
    model: str
    model_version: str


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


def vocabularies(models: ModelSet, max_id_bytes: int | None = None) -> dict[str, ModelVocabulary]:
    """Each model's vocabulary (meta.json), rebuilt with every model set; refuses a set without one, or
    with a string id longer than `max_id_bytes` (no request could send it)."""
    found = {}
    for name in models.names:
        vocab = models.get(name).meta.get("vocabulary", {})
        sizes = {key: vocab.get(key) for key in ("n_items", "n_categories")}
        if not all(isinstance(size, int) and size > 0 for size in sizes.values()):
            raise ValueError(f"{name}'s meta.json vocabulary {vocab} lacks positive n_items and n_categories")
        external = ExternalIds.model_validate(vocab["external"]) if vocab.get("external") else None
        if external is not None and max_id_bytes is not None and external.longest_id_bytes() > max_id_bytes:
            raise ValueError(f"{name}'s vocabulary lists a {external.longest_id_bytes()}-byte string id, over "
                             f"INFERSUITE_CTR_MAX_ID_BYTES={max_id_bytes}: no request could send it")
        found[name] = ModelVocabulary(sizes["n_items"], sizes["n_categories"], external)
    return found


# (ScoreQuery attribute, vocabulary table, request field) of every id array
_ID_FIELDS: tuple[tuple[str, Literal["items", "categories"], str], ...] = (
    ("history_items", "items", "history_item_ids"), ("history_categories", "categories", "history_category_ids"),
    ("candidate_items", "items", "candidate_item_ids"),
    ("candidate_categories", "categories", "candidate_category_ids"))


def _external_rows(vocab: ExternalIds, kind: Literal["items", "categories"], ids: np.ndarray | Sequence[str],
                   field: str) -> np.ndarray:
    rows, known = vocab.rows(kind, ids)
    if vocab.oov == "reject" and not known.all():
        i = int(np.argmin(known))
        shown = repr(ids[i]) if vocab.string_ids else int(ids[i])
        raise InvalidArgument(f"{field}[{i}]={shown} is not in the model's vocabulary "
                              f"({int((~known).sum())} unknown id(s); this model was trained to reject them)")
    return rows  # type: ignore[no-any-return]


_KEY_FIELDS = tuple(field.replace("_ids", "_keys") for _, _, field in _ID_FIELDS)


def _check_key_lengths(keys: Sequence[str], field: str, max_bytes: int) -> None:
    """Every string id non-empty and at most `max_bytes` UTF-8 bytes (a character is at most 4 bytes,
    so only long ones are encoded)."""
    for i, key in enumerate(keys):
        if not key:
            raise InvalidArgument(f"{field}[{i}] is the empty string: a string id needs at least one character")
        if len(key) * 4 > max_bytes and (size := len(key.encode())) > max_bytes:
            raise InvalidArgument(f"{field}[{i}] is {size} bytes long, over the limit of {max_bytes} bytes "
                                  "per string id (INFERSUITE_CTR_MAX_ID_BYTES)")


class CtrHandler:
    def __init__(self, settings: CtrSettings, runtime: Runtime):
        self._settings = settings
        self._served = runtime.service_models("ctr", lambda models: vocabularies(models, settings.max_id_bytes))
        self._candidates = runtime.metrics.histogram(
            "infersuite_ctr_candidates", "Candidates per Score request.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
        self._history = runtime.metrics.histogram(
            "infersuite_ctr_history_length", "Behaviours used per Score request (after truncation).",
            buckets=(0, 1, 5, 10, 20, 50, 100, 200, 500))

    @property
    def model_names(self) -> list[str]:
        return [self._settings.model, *self._settings.extra_models]

    def _check_counts(self, history: tuple[int, int], candidates: tuple[int, int], keys: bool) -> None:
        """The (items, categories) counts of the history and the candidates, before any id is read."""
        kind = "keys" if keys else "ids"
        for prefix, (items, categories) in (("history", history), ("candidate", candidates)):
            if items != categories:
                raise InvalidArgument(f"{prefix}_item_{kind} has {items} ids but {prefix}_category_{kind} has "
                                      f"{categories}: the arrays must pair up index by index")
        n = candidates[0]
        if n == 0:
            raise InvalidArgument(f"candidate_item_{kind} is empty: at least one candidate is required (integer ids "
                                  "in candidate_item_ids, or string ids in candidate_item_keys)")
        if n > self._settings.max_candidates:
            raise InvalidArgument(f"candidate_item_{kind} has {n} candidates, more than the maximum of "
                                  f"{self._settings.max_candidates}")
        if keys and history[0] > self._settings.max_history_keys:
            raise InvalidArgument(f"history_item_keys has {history[0]} ids, more than the maximum of "
                                  f"{self._settings.max_history_keys} string behaviours "
                                  "(INFERSUITE_CTR_MAX_HISTORY_KEYS)")

    def _validate(self, query: ScoreQuery, vocab: ModelVocabulary, name: str) -> ScoreQuery:
        """The query with embedding rows for ids (the user's own ids mapped when the model has them)."""
        if query.keys is not None:
            return self._rows_of_keys(query, vocab, name)
        self._check_counts((query.history_items.size, query.history_categories.size),
                           (query.candidate_items.size, query.candidate_categories.size), keys=False)
        if vocab.external is not None and vocab.external.string_ids:
            raise InvalidArgument(f"model {name!r} maps string ids (its vocabulary holds strings): send them in "
                                  f"{', '.join(_KEY_FIELDS)}, not in the integer *_ids fields")
        if vocab.external is not None:
            rows = {attribute: _external_rows(vocab.external, kind, getattr(query, attribute), field)
                    for attribute, kind, field in _ID_FIELDS}
            query = replace(query, history_items=rows["history_items"], history_categories=rows["history_categories"],
                            candidate_items=rows["candidate_items"], candidate_categories=rows["candidate_categories"])
        for attribute, kind, field in _ID_FIELDS:
            size = vocab.n_items if kind == "items" else vocab.n_categories
            _check_vocabulary(getattr(query, attribute), field, size)
        return query

    def _rows_of_keys(self, query: ScoreQuery, vocab: ModelVocabulary, name: str) -> ScoreQuery:
        """The embedding rows of a query's string ids: counts and lengths checked before any lookup."""
        keys = query.keys
        assert keys is not None
        sent = [field for attribute, _, field in _ID_FIELDS if getattr(query, attribute).size]
        if sent:
            raise InvalidArgument(f"the request sends integer ids ({', '.join(sent)}) and string ids (the *_keys "
                                  "fields): send one kind, not both")
        self._check_counts((len(keys.history_items), len(keys.history_categories)),
                           (len(keys.candidate_items), len(keys.candidate_categories)), keys=True)
        if vocab.external is None or not vocab.external.string_ids:
            takes = "the user's own integer ids" if vocab.external is not None else "integer ids 1..n"
            raise InvalidArgument(f"model {name!r} has no string vocabulary (it takes {takes}): send "
                                  f"{', '.join(field for _, _, field in _ID_FIELDS)} instead of the *_keys fields")
        for (attribute, _, _), field in zip(_ID_FIELDS, _KEY_FIELDS, strict=True):
            _check_key_lengths(getattr(keys, attribute), field, self._settings.max_id_bytes)
        rows = [_external_rows(vocab.external, kind, getattr(keys, attribute), field)
                for (attribute, kind, _), field in zip(_ID_FIELDS, _KEY_FIELDS, strict=True)]
        return replace(query, keys=None, history_items=rows[0], history_categories=rows[1], candidate_items=rows[2],
                       candidate_categories=rows[3])

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
        query = self._validate(query, vocabularies[model.name], model.name)
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
