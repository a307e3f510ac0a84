"""Reads a Triton-layout model repository.

    <root>/<model_name>/config.pbtxt        Triton ModelConfig, protobuf text format
    <root>/<model_name>/<version>/model.onnx
    <root>/<model_name>/<version>/meta.json

config.pbtxt is parsed against Triton's own `ModelConfig` schema (shipped with tritonclient),
so the directory handed to a real Triton server is the one validated here. The latest
numeric version is served (Triton's default version policy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from services.runtime.errors import NotFound, Unavailable
from services.runtime.meta import load_meta

CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.onnx"
META_FILE = "meta.json"
ALIASES_FILE = "aliases.json"  # {"din": "din-int8-qat"}: a family's default model, chosen by the exporters


@dataclass(frozen=True)
class RepositoryModel:
    """One servable version of a model."""

    name: str
    version: str
    model_path: Path
    config: model_config_pb2.ModelConfig
    meta: dict[str, Any] = field(default_factory=dict)


def parse_config(text: str) -> model_config_pb2.ModelConfig:
    """Parses config.pbtxt text; unknown fields or bad syntax raise text_format.ParseError."""
    return text_format.Parse(text, model_config_pb2.ModelConfig())


class ModelRepository:
    def __init__(self, root: Path):
        self.root = Path(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / CONFIG_FILE).is_file())

    def canonical(self, name: str) -> str:
        """The model an alias stands for (aliases.json), or the name itself."""
        path = self.root / ALIASES_FILE
        aliases = json.loads(path.read_text()) if path.is_file() else {}
        return str(aliases.get(name, name))

    def versions(self, name: str) -> list[str]:
        model_dir = self.root / name
        found = [p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()] \
            if model_dir.is_dir() else []
        return sorted(found, key=int)

    def resolve(self, name: str, version: str = "") -> RepositoryModel:
        """The requested version, or the latest when version is empty."""
        model_dir = self.root / name
        if not (model_dir / CONFIG_FILE).is_file():
            raise NotFound(f"model {name!r} is not in the model repository")
        versions = self.versions(name)
        if not versions:
            raise Unavailable(f"model {name!r} has no numeric version directory")
        chosen = version or versions[-1]
        if chosen not in versions:
            raise NotFound(f"model {name!r} has no version {chosen!r} (has {', '.join(versions)})")
        config = parse_config((model_dir / CONFIG_FILE).read_text())
        version_dir = model_dir / chosen
        meta_path = version_dir / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        load_meta(name, chosen, meta)  # its schema (modelmeta): a bad or missing field fails the load, named
        return RepositoryModel(name, chosen, version_dir / MODEL_FILE, config, meta)
