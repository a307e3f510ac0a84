"""OIP ModelInfer with string ids: BYTES tensors for the id inputs of a DIN model whose vocabulary
holds strings (a click log trained with `--ids string`, models/ctr/user_data.py).

Such a model's ModelMetadata shows history_items, history_categories, candidate_items and
candidate_categories as BYTES (infersuite/services/runtime/bytes_inputs.py); a client sends the ids of its own
systems there, as UTF-8, and they are mapped through the model's vocabulary to embedding rows with
the model's out-of-vocabulary policy (`reject`: INVALID_ARGUMENT naming the input, the first unknown
id and its index; `bucket`: the shared row). In the history inputs, (U, T) with ragged rows, the empty
string is padding (row 0, which history_mask hides); in the candidate inputs it is refused. INT64 rows
stay accepted on the same inputs (the graph's own input, as Triton would serve the repository).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from infersuite.modelmeta.families import ExternalIds
from infersuite.services.ctr.settings import CtrSettings
from infersuite.services.runtime import InvalidArgument
from infersuite.services.runtime.backends.base import LoadedModel
from infersuite.services.runtime.bytes_inputs import BytesInputsFactory

# graph input -> the vocabulary table its ids come from
INPUT_TABLES: dict[str, Literal["items", "categories"]] = {
    "history_items": "items", "history_categories": "categories",
    "candidate_items": "items", "candidate_categories": "categories"}
PADDED = frozenset({"history_items", "history_categories"})  # "" = padding (row 0) here only


def _where(flat: int, shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(int(i)) for i in np.unravel_index(flat, shape)) + "]"


class StringIdInputs:
    """The BytesInputs of one model version (infersuite/services/runtime/bytes_inputs.py)."""

    def __init__(self, model: str, vocabulary: ExternalIds, names: frozenset[str], max_id_bytes: int):
        self.model = model
        self.vocabulary = vocabulary
        self.names = names
        self.max_element_bytes = max_id_bytes

    def _text(self, name: str, values: list[bytes], shape: tuple[int, ...]) -> list[str]:
        keys = []
        for index, value in enumerate(values):
            try:
                keys.append(value.decode())
            except UnicodeDecodeError:
                raise InvalidArgument(f"input {name!r} element at index {_where(index, shape)} is not UTF-8 text "
                                      f"({value[:32]!r})") from None
        return keys

    def map(self, name: str, values: list[bytes], shape: tuple[int, ...]) -> np.ndarray:
        keys = self._text(name, values, shape)
        padding = np.fromiter((not key for key in keys), bool, len(keys))
        if padding.any() and name not in PADDED:
            raise InvalidArgument(f"input {name!r} element at index {_where(int(np.argmax(padding)), shape)} is the "
                                  "empty string: only the history inputs take it (padding, hidden by history_mask)")
        rows, known = self.vocabulary.rows(INPUT_TABLES[name], keys)
        rows[padding] = 0
        unknown = ~(known | padding)
        if self.vocabulary.oov == "reject" and unknown.any():
            first = int(np.argmax(unknown))
            raise InvalidArgument(f"input {name!r} id {keys[first]!r} at index {_where(first, shape)} is not in model "
                                  f"{self.model!r}'s vocabulary ({int(unknown.sum())} unknown id(s); this model was "
                                  "trained to reject them)")
        return rows.reshape(shape)


def string_id_inputs(settings: CtrSettings) -> BytesInputsFactory:
    """The factory the ctr family registers with the runtime: StringIdInputs for a ctr model whose
    vocabulary holds strings, None for any other model."""

    def of(model: LoadedModel) -> StringIdInputs | None:
        external = model.meta.get("vocabulary", {}).get("external") if model.meta.get("family") == "ctr" else None
        if not external:
            return None
        vocabulary = ExternalIds.model_validate(external)
        names = frozenset(INPUT_TABLES) & {spec.name for spec in model.inputs}
        if not vocabulary.string_ids or not names:
            return None
        return StringIdInputs(model.name, vocabulary, names, settings.max_id_bytes)

    return of
