"""The schema of meta.json, the contract between the exporters and the runtime (docs/model_repository.md).

    <repository>/<model>/<version>/meta.json

Typed and versioned (`schema_version`, current SCHEMA_VERSION; a file without it is version 1).
The exporters validate a meta.json before writing it (exporters/repository.py) and the runtime
when it resolves a version (infersuite/services/runtime/meta.py), so a bad or missing field is refused
naming the model, the version and the field.

A top-level package on purpose, importing pydantic only: the exporters import it without grpc,
and infersuite/services/runtime/__init__.py (which the runtime's own modules cannot be imported without)
starts the gRPC server's imports. No torch, onnxruntime or grpc here.
"""

from infersuite.modelmeta.base import SCHEMA_VERSION, ModelMeta
from infersuite.modelmeta.families import (
    FAMILY_SCHEMAS,
    AudioMeta,
    CodecTables,
    CtrMeta,
    SegmentationBackboneMeta,
    SegmentationMeta,
    SegmentationPipeline,
    SplitComputeMeta,
    Vocabulary,
    schema_for,
)
from infersuite.modelmeta.serving import Batching, Limits
from infersuite.modelmeta.validate import MetaError, read_meta, read_meta_json, validate_meta

__all__ = [
    "FAMILY_SCHEMAS", "SCHEMA_VERSION", "AudioMeta", "Batching", "CodecTables", "CtrMeta", "Limits", "MetaError",
    "ModelMeta", "SegmentationBackboneMeta", "SegmentationMeta", "SegmentationPipeline", "SplitComputeMeta",
    "Vocabulary", "read_meta", "read_meta_json", "schema_for", "validate_meta",
]
