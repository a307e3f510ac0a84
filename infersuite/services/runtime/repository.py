"""Reads a Triton-layout model repository.

    <root>/<model_name>/config.pbtxt        Triton ModelConfig, protobuf text format (optional)
    <root>/<model_name>/<version>/model.onnx
    <root>/<model_name>/<version>/meta.json (optional)

config.pbtxt is parsed against Triton's own `ModelConfig` schema (shipped with tritonclient),
so the directory handed to a real Triton server is the one validated here. As in Triton with
auto-complete on (its default), a model directory without config.pbtxt is a model too: its config
is derived from the ONNX graph when it loads (infersuite/services/runtime/autocomplete.py), and a partial
config.pbtxt is completed the same way. The latest numeric version is served (Triton's default
version policy).

A file that does not parse is a `RepositoryError` naming the file: a fault of the repository, never
of the caller, and never an INTERNAL error without a name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from infersuite.services.runtime.errors import NotFound, RepositoryError
from infersuite.services.runtime.meta import load_meta

CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.onnx"
META_FILE = "meta.json"
ALIASES_FILE = "aliases.json"  # {"din": "din-int8-qat"}: a family's default model, chosen by the exporters
ONNX_PLATFORM = "onnxruntime_onnx"


@dataclass(frozen=True)
class RepositoryModel:
    """One servable version of a model. `config` is config.pbtxt as written (or an empty one naming
    the model); the loader completes it from the graph (infersuite/services/runtime/autocomplete.py)."""

    name: str
    version: str
    model_path: Path
    config: model_config_pb2.ModelConfig
    meta: dict[str, Any] = field(default_factory=dict)


def parse_config(text: str) -> model_config_pb2.ModelConfig:
    """Parses config.pbtxt text; unknown fields or bad syntax raise text_format.ParseError."""
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _numeric_versions(model_dir: Path) -> list[str]:
    found = [p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()] if model_dir.is_dir() else []
    return sorted(found, key=int)


class ModelRepository:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _is_model(self, directory: Path) -> bool:
        """A config.pbtxt, or (auto-complete) a numeric version directory holding model.onnx."""
        if directory.name.startswith(".") or not directory.is_dir():
            return False
        return (directory / CONFIG_FILE).is_file() or any(
            (directory / version / MODEL_FILE).is_file() for version in _numeric_versions(directory))

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if self._is_model(p))

    def _read_json(self, path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RepositoryError(f"{path.relative_to(self.root)} is not valid JSON: {exc}") from None

    def canonical(self, name: str) -> str:
        """The model an alias stands for (aliases.json), or the name itself."""
        path = self.root / ALIASES_FILE
        aliases = self._read_json(path) if path.is_file() else {}
        if not isinstance(aliases, dict):
            raise RepositoryError(f"{ALIASES_FILE} must map alias names to model names")
        return str(aliases.get(name, name))

    def versions(self, name: str) -> list[str]:
        return _numeric_versions(self.root / name)

    def config(self, name: str) -> model_config_pb2.ModelConfig:
        """config.pbtxt as written, or an empty config naming the model."""
        path = self.root / name / CONFIG_FILE
        if not path.is_file():
            return model_config_pb2.ModelConfig(name=name)
        try:
            config = parse_config(path.read_text())
        except (OSError, UnicodeDecodeError, text_format.ParseError) as exc:
            raise RepositoryError(f"{name}/{CONFIG_FILE} does not parse as a Triton ModelConfig: {exc}") from None
        if config.name and config.name != name:  # Triton refuses this too
            raise RepositoryError(f"{name}/{CONFIG_FILE} names the model {config.name!r}, not its directory {name!r}")
        config.name = name
        return config

    def resolve(self, name: str, version: str = "") -> RepositoryModel:
        """The requested version, or the latest when version is empty."""
        if not self._is_model(self.root / name):
            raise NotFound(f"model {name!r} is not in the model repository")
        versions = self.versions(name)
        if not versions:
            raise RepositoryError(f"model {name!r} has no numeric version directory ({name}/1/{MODEL_FILE})")
        chosen = version or versions[-1]
        if chosen not in versions:
            raise NotFound(f"model {name!r} has no version {chosen!r} (has {', '.join(versions)})")
        config = self.config(name)
        version_dir = self.root / name / chosen
        meta_path = version_dir / META_FILE
        meta = self._read_json(meta_path) if meta_path.is_file() else {}
        if not isinstance(meta, dict):
            raise RepositoryError(f"{name}/{chosen}/{META_FILE} must hold a JSON object")
        load_meta(name, chosen, meta)  # its schema (modelmeta): a bad or missing field fails the load, named
        return RepositoryModel(name, chosen, version_dir / MODEL_FILE, config, meta)
