"""meta.json at load: validated against its schema (modelmeta), refused as a load error that names
the model, the version and the field.

The schema itself lives in the top-level `modelmeta` package, which the exporters import without
grpc; this module turns its refusal into the runtime's error hierarchy.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infersuite.modelmeta import MetaError, ModelMeta, read_meta_json, validate_meta
from infersuite.services.runtime.errors import RepositoryError


class InvalidModelMeta(RepositoryError):
    """A version whose meta.json the schema refuses: a failed load of that version, never a request error.
    The message names no file path (RepositoryIndex shows it to callers)."""

    def __init__(self, err: MetaError):
        super().__init__(str(err))
        self.model, self.version, self.fields = err.model, err.version, err.fields


def load_meta(name: str, version: str | int, source: Mapping[str, Any] | Path) -> ModelMeta:
    """The typed meta.json of one model version, from its parsed dict or its file."""
    try:
        raw = read_meta_json(source, model=name, version=version) if isinstance(source, Path) else source
        return validate_meta(raw, model=name, version=version)
    except MetaError as err:
        raise InvalidModelMeta(err) from None

