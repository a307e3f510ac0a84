"""Each family's own meta.json fields, on top of the common ones (infersuite/modelmeta/base.py).

A file's `family` picks its schema (`FAMILY_SCHEMAS`); a family not listed (a plugin family, or a
user's own model) is validated against the common fields only and keeps its block as extra keys.
What a family's service cannot run without is required here, so a missing vocabulary or codec is
refused when the model loads, naming the field, instead of when the service derives its state.

The family blocks allow unknown keys (extra="allow"): they are read by the family's own service,
which takes what it knows, and an exporter may add provenance (a new figure, a setting) without a
schema version bump or a refusal by an older server. A key the runtime must enforce belongs in
`limits` or `batching`, which refuse unknown keys.

Readers: infersuite/services/ctr/handler.py (`vocabularies`), infersuite/services/segmentation/handler.py
(`Pipeline.from_meta`), infersuite/services/splitcompute/codec.py (`Codec.from_meta`) and edge.py,
infersuite/services/audio/handler.py (`window_sizes`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    PrivateAttr,
    StrictInt,
    StrictStr,
    model_validator,
)

from infersuite.modelmeta.base import ModelMeta

ModelName = Annotated[str, Field(min_length=1)]
Count = Annotated[StrictInt, Field(gt=0)]  # an integer in the JSON, never 600.0 (the ctr handler checks the type)


class _Block(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


# ---- ctr: Deep Interest Network


class ExternalIds(_Block):
    """A model trained on a user's click log (models/ctr/user_data.py) takes the ids of the user's own
    systems: row i + 1 of each embedding table is the i-th id listed; any other id is refused
    (`oov` reject) or shares the learned row after the listed ones (`oov` bucket). The ids are integers,
    or strings (asins, SKUs, UUIDs: a click log read with `--ids string`), both tables of one kind; a
    string id is never empty (the empty string is the OIP padding key, infersuite/services/ctr/handler.py)."""

    items: list[StrictInt] | list[StrictStr] = Field(min_length=1)
    categories: list[StrictInt] | list[StrictStr] = Field(min_length=1)
    oov: Literal["reject", "bucket"]
    min_count: PositiveInt = 1

    @model_validator(mode="after")
    def _distinct(self) -> ExternalIds:
        if len({type(self.items[0]), type(self.categories[0])}) != 1:
            raise ValueError("vocabulary.external lists integer ids for one table and strings for the other")
        for kind in ("items", "categories"):
            if len(set(getattr(self, kind))) != len(getattr(self, kind)):
                raise ValueError(f"vocabulary.external.{kind} lists an id twice")
            if "" in getattr(self, kind):
                raise ValueError(f"vocabulary.external.{kind} lists the empty string (reserved for padding)")
        return self

    _sorted: dict[str, tuple[Any, Any]] = PrivateAttr(default_factory=dict)  # kind -> (sorted ids, their rows - 1)
    _by_key: dict[str, dict[str, int]] = PrivateAttr(default_factory=dict)  # kind -> {string id: row}

    @property
    def string_ids(self) -> bool:
        """Whether the ids are strings (else integers)."""
        return isinstance(self.items[0], str)

    def longest_id_bytes(self) -> int:
        """The longest string id in UTF-8 bytes (0 for integer ids)."""
        if not self.string_ids:
            return 0
        return max(len(str(key).encode()) for key in [*self.items, *self.categories])

    def rows(self, kind: Literal["items", "categories"], ids: Any) -> tuple[Any, Any]:
        """(embedding rows, known mask) of an int64 array of external ids (a sequence of strings for a
        string vocabulary); unknown ids get the bucket row under `bucket`, 0 (padding: the caller refuses
        or drops them) under `reject`. The lookup table is built once per vocabulary (the ctr service maps
        every request's ids with it)."""
        import numpy as np

        unknown = self.table_rows(kind) if self.oov == "bucket" else 0
        if self.string_ids:
            return self._rows_of_keys(kind, ids, unknown)
        if kind not in self._sorted:
            known = np.asarray(getattr(self, kind), np.int64)
            order = np.argsort(known, kind="stable")
            self._sorted[kind] = (known[order], order)
        ordered, order = self._sorted[kind]
        ids = np.asarray(ids, np.int64)
        position = np.minimum(np.searchsorted(ordered, ids), len(ordered) - 1)
        found = ordered[position] == ids
        return np.where(found, order[position] + 1, unknown).astype(np.int64), found

    def _rows_of_keys(self, kind: Literal["items", "categories"], keys: Any, unknown: int) -> tuple[Any, Any]:
        import numpy as np

        if kind not in self._by_key:
            self._by_key[kind] = {key: row for row, key in enumerate(getattr(self, kind), start=1)}
        lookup = self._by_key[kind].get
        rows = np.fromiter((lookup(key, 0) for key in keys), np.int64, len(keys))
        found = rows > 0
        return np.where(found, rows, unknown), found

    def table_rows(self, kind: Literal["items", "categories"]) -> int:
        """The embedding table's rows besides padding: the listed ids, plus the bucket."""
        return len(getattr(self, kind)) + (self.oov == "bucket")


class Vocabulary(_Block):
    """Embedding table sizes; ids 1..n are valid, 0 is padding (unless `external` maps the user's ids)."""

    n_items: Count
    n_categories: Count
    external: ExternalIds | None = None

    @model_validator(mode="after")
    def _sizes_match(self) -> Vocabulary:
        if self.external is not None and (self.external.table_rows("items"), self.external.table_rows(
                "categories")) != (self.n_items, self.n_categories):
            raise ValueError("vocabulary.external lists other table sizes than n_items and n_categories")
        return self


class CtrMeta(ModelMeta):
    family: Literal["ctr"]
    vocabulary: Vocabulary
    layout: str | None = None  # "rows": candidates concatenated across users (models/ctr/din_rows.py)
    variant: str | None = None  # pooling/activation, e.g. "attention/dice"


# ---- segmentation: ECO-M2F, one graph per stage; the backbone's meta.json carries the pipeline


class SegmentationStages(_Block):
    """The graph (model name) of each stage."""

    backbone: ModelName
    encoder_layers: list[ModelName] = Field(min_length=1)
    head: ModelName
    gate: ModelName | None = None  # the gate's own graph when it reads the tokens after gate_after_layer


class StageGflops(_Block):
    backbone_gate: NonNegativeFloat
    encoder_layer: NonNegativeFloat  # per layer
    head: NonNegativeFloat


class SegmentationPipeline(_Block):
    """The staged model: which graphs run, where it may exit, and what each stage costs."""

    stages: SegmentationStages
    image_size: PositiveInt
    exits: list[PositiveInt] = Field(min_length=1)  # encoder depths it may exit after, ascending
    class_names: list[str] = Field(min_length=1)
    stage_gflops: StageGflops
    gate_after_layer: NonNegativeInt = 0  # 0: the backbone gives the exit logits
    n_layers: PositiveInt | None = None
    beta: float | None = None  # the gate's compute penalty at training
    gflops_full_depth: NonNegativeFloat | None = None

    @model_validator(mode="after")
    def _exits_fit_the_stages(self) -> SegmentationPipeline:
        layers = len(self.stages.encoder_layers)
        if self.exits != sorted(self.exits) or self.exits[-1] > layers:
            raise ValueError(f"exits {self.exits} are not ascending within the {layers} encoder layers")
        if self.n_layers is not None and self.n_layers != layers:
            raise ValueError(f"n_layers {self.n_layers} but stages name {layers} encoder layers")
        if (self.stages.gate is None) != (self.gate_after_layer == 0) or self.gate_after_layer > self.exits[0]:
            raise ValueError(f"a gate stage {self.stages.gate!r} after layer {self.gate_after_layer} does not fit "
                             f"exits {self.exits} (a gate graph goes with 1 <= gate_after_layer <= the first exit)")
        return self


class EndToEndParity(_Block):
    """The staged onnxruntime loop vs torch on held-out images (exporters/segmentation.py)."""

    max_abs_logit_diff: NonNegativeFloat
    min_mask_pixel_agreement: Annotated[float, Field(ge=0.0, le=1.0)]
    images: PositiveInt


SegmentationStage = Annotated[str, Field(pattern=r"^(backbone_gate|gate|head|encoder_layer_[1-9][0-9]*)$")]


class SegmentationMeta(ModelMeta):
    family: Literal["segmentation"]
    stage: SegmentationStage
    pipeline: SegmentationPipeline | None = None
    end_to_end_parity: EndToEndParity | None = None


class SegmentationBackboneMeta(SegmentationMeta):
    """The backbone graph: the service reads the whole pipeline from it."""

    stage: Literal["backbone_gate"]
    pipeline: SegmentationPipeline


# ---- splitcompute: Entropic Student; both graphs carry the codec the edge encodes with


class CodecTables(_Block):
    """The entropy coder's tables (infersuite/services/splitcompute/codec.py)."""

    version: Annotated[int, Field(ge=0, lt=1 << 32)]  # u32 on the wire: a hash of the encoder weights and tables
    latent_shape: tuple[PositiveInt, PositiveInt, PositiveInt]  # (C, h, w) of one image's latent
    radius: NonNegativeInt  # symbols -R..R
    pmf: list[list[NonNegativeFloat]] = Field(min_length=1)  # (C, 2R + 1) probability per channel and symbol

    @model_validator(mode="after")
    def _tables_fit_the_latent(self) -> CodecTables:
        if len(self.pmf) != self.latent_shape[0]:
            raise ValueError(f"pmf has {len(self.pmf)} rows, latent_shape {list(self.latent_shape)} has "
                             f"{self.latent_shape[0]} channels")
        if widths := sorted({len(row) for row in self.pmf} - {2 * self.radius + 1}):
            raise ValueError(f"pmf rows of {widths} symbols; radius {self.radius} needs {2 * self.radius + 1}")
        return self


class SplitComputeMeta(ModelMeta):
    family: Literal["splitcompute"]
    codec: CodecTables
    class_names: list[str] | None = None
    image_size: PositiveInt | None = None  # the edge encoder's input side
    graph: str | None = None  # "edge encoder" or "decoder + tail"


# ---- audio: PaSST and bag-of-words embedders


class AudioFrontEnd(_Block):
    """The log-mel front end inside the graph (models/audio): provenance, not read by the service."""

    sample_rate: PositiveInt | None = None
    window_samples: PositiveInt | None = None
    n_fft: PositiveInt | None = None
    hop_length: PositiveInt | None = None
    win_length: PositiveInt | None = None
    n_mels: PositiveInt | None = None


class AudioMeta(ModelMeta):
    family: Literal["audio"]
    sample_rate: PositiveInt  # the rate the graph takes; the service resamples to it
    window_samples: PositiveInt  # one window of the graph's input, in samples at sample_rate
    embedding_size: PositiveInt | None = None
    front_end: AudioFrontEnd | None = None

    @model_validator(mode="after")
    def _front_end_agrees(self) -> AudioMeta:
        front = self.front_end
        for name in ("sample_rate", "window_samples"):
            if front is not None and getattr(front, name) not in (None, getattr(self, name)):
                raise ValueError(f"front_end.{name} {getattr(front, name)} differs from {name} {getattr(self, name)}")
        return self


def _segmentation(raw: Mapping[str, Any]) -> type[ModelMeta]:
    return SegmentationBackboneMeta if raw.get("stage") == "backbone_gate" else SegmentationMeta


# family -> the schema of one of its files (a function where the schema depends on the file's stage).
FAMILY_SCHEMAS: dict[str, Callable[[Mapping[str, Any]], type[ModelMeta]]] = {
    "ctr": lambda raw: CtrMeta,
    "segmentation": _segmentation,
    "splitcompute": lambda raw: SplitComputeMeta,
    "audio": lambda raw: AudioMeta,
}


def schema_for(raw: Mapping[str, Any]) -> type[ModelMeta]:
    """The schema of one meta.json: its family's, or the common one."""
    family = raw.get("family")
    chooser = FAMILY_SCHEMAS.get(family) if isinstance(family, str) else None
    return chooser(raw) if chooser is not None else ModelMeta
