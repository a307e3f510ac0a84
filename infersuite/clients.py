"""The suite's typed clients in one import: `from infersuite.clients import CtrClient, ChannelSecurity`.

Each lives in its service's package (`infersuite.services.<service>.client`) and needs only grpcio, protobuf,
numpy and Pillow; `EdgeDevice` and `EdgeEncoder` (the split-computing edge SDK) also need onnxruntime and
constriction (the `edge` extra) and are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from infersuite.services.audio.client import AudioClient, AudioClientError, raw_audio, wav_audio
from infersuite.services.channel import ChannelSecurity, security_from_env
from infersuite.services.client import ClientClosedError, InferSuiteClientError, RetryPolicy
from infersuite.services.ctr.client import CtrClient, CtrClientError, ScoreInput
from infersuite.services.segmentation.client import SegmentationClient, SegmentationClientError
from infersuite.services.splitcompute.client import SplitComputeClient, SplitComputeClientError

_EDGE = ("EdgeDevice", "EdgeEncoder")

__all__ = ["AudioClient", "AudioClientError", "ChannelSecurity", "ClientClosedError", "CtrClient", "CtrClientError",
           "InferSuiteClientError", "RetryPolicy", "ScoreInput", "SegmentationClient", "SegmentationClientError",
           "SplitComputeClient", "SplitComputeClientError", "raw_audio", "security_from_env", "wav_audio", *_EDGE]


def __getattr__(name: str) -> Any:
    if name in _EDGE:
        return getattr(importlib.import_module("infersuite.services.splitcompute.edge"), name)
    raise AttributeError(f"module 'infersuite.clients' has no attribute {name!r}")
