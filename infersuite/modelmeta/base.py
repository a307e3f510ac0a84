"""The fields every meta.json may carry, whatever its family: version, provenance, quality, and the
runtime's `limits` and `batching` blocks.

Every field is optional here: a user's own model may come with no meta.json at all, or one with a
few keys, and is served all the same (limits then come from config dims and the element budget).
What a family needs is required by its own schema (infersuite/modelmeta/families.py), chosen by `family`.

Unknown top-level keys are kept (extra="allow"): a family this module does not know keeps its
block as extra keys, and a key a newer exporter adds does not make an older runtime refuse a model
it can serve. The blocks the runtime enforces (`limits`, `batching`) refuse unknown keys instead
(infersuite/modelmeta/serving.py says why).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, NonNegativeFloat, NonNegativeInt, PositiveInt

from infersuite.modelmeta.serving import Batching, Limits

SCHEMA_VERSION = 1  # the newest meta.json schema this code reads; a file without the field is version 1

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]  # lower-case hex digest
QualityFigures = dict[str, JsonValue]  # metric name -> figure (numbers, curves, settings)


class ModelMeta(BaseModel):
    """<repository>/<model>/<version>/meta.json, common to every family."""

    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: Literal[1] = 1  # SCHEMA_VERSION; infersuite/modelmeta/validate.py refuses newer ones by name first
    family: str | None = None  # the service family that reads the model ("ctr", ...); None: a plain model
    architecture: str | None = None  # e.g. "din", "eco-m2f"
    recipe: str | None = None  # quantization recipe ("fp32", "int8-static-qdq", ...)
    source_checkpoint: str | None = None  # the torch checkpoint's file name
    source_checkpoint_sha256: Sha256 | None = None
    source_model: str | None = None  # a variant (e.g. a quantized form): the fp32 model it was made from
    model_sha256: Sha256 | None = None  # of model.onnx, written by exporters/repository.py
    size_bytes: NonNegativeInt | None = None  # of model.onnx
    onnx_opset: PositiveInt | None = None
    torch_version: str | None = None
    parity_max_abs_diff: NonNegativeFloat | None = None  # ONNX vs torch on the export's parity inputs
    # The family's quality figures: one set, or one row per policy (segmentation's fixed exits and gate).
    quality: QualityFigures | list[QualityFigures] | None = None
    relative_quality_loss: float | None = None  # a variant's quality loss vs fp32 (exporters/quantize)
    quality_gate: Literal["passed", "FAILED"] | None = None  # whether that loss is within the family's bound
    kernels: str | None = None  # a variant's verdict: integer kernels, or only simulated
    notes: list[str] | None = None  # a variant's recipe notes
    limits: Limits | None = None  # per-request bounds (infersuite/services/runtime/limits.py)
    batching: Batching | None = None  # how requests combine (infersuite/services/runtime/batch_layout.py)

    def extra_fields(self) -> dict[str, Any]:
        """The keys this schema does not name (a plugin family's own block, or a newer exporter's)."""
        return dict(self.__pydantic_extra__ or {})
