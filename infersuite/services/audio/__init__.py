"""The audio service: scene and timestamp embeddings (PaSST or bag of words), HEAR conventions.

The public names load on first use (PEP 562), so importing a numpy-only submodule such as
`infersuite.services.audio.windows` (the HEAR package shares the service's windows) needs no grpc or protobuf.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infersuite.services.audio.handler import AudioHandler, AudioInput, EmbedQuery, SceneResult, TimestampResult
    from infersuite.services.audio.service import SERVICE, AudioService
    from infersuite.services.audio.settings import AudioSettings

_HOMES = {
    "SERVICE": "service", "AudioService": "service", "AudioSettings": "settings", "AudioHandler": "handler",
    "AudioInput": "handler", "EmbedQuery": "handler", "SceneResult": "handler", "TimestampResult": "handler",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


__all__ = ["SERVICE", "AudioHandler", "AudioInput", "AudioService", "AudioSettings", "EmbedQuery", "SceneResult",
           "TimestampResult"]
