"""Remote backend: runs a service's models on NVIDIA Triton Inference Server via tritonclient.

Same interface as the onnxruntime backend, so services and the scheduler do not change. Every
call carries a client timeout (the request's remaining deadline, capped by settings), so a dead
Triton gives a prompt UNAVAILABLE instead of a hung call; the gRPC channel reconnects by itself
when Triton returns. One client (one channel) per backend serves every model: segmentation's eight
stage graphs share it. Triton's status codes map through one table (`TRITON_CODES`), never by
matching text; Triton's messages go to the log, not to the caller (they can name graph nodes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from infersuite.services.runtime.context import request_deadline
from infersuite.services.runtime.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InferSuiteError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from infersuite.services.runtime.repository import RepositoryModel
from infersuite.services.runtime.settings import RuntimeSettings
from infersuite.services.runtime.tensors import TensorSpec

log = logging.getLogger(__name__)

# Triton's gRPC status (tritonclient reports it as "StatusCode.<NAME>") -> what the caller gets.
# Absent codes (UNAVAILABLE, INTERNAL, UNKNOWN, CANCELLED...) mean the backend failed: UNAVAILABLE.
TRITON_CODES: dict[str, Callable[[str], InferSuiteError]] = {
    "INVALID_ARGUMENT": lambda model: InvalidArgument(f"model {model!r} rejected the inputs (Triton backend)"),
    "DEADLINE_EXCEEDED": lambda model: DeadlineExceeded(
        f"Triton did not answer for model {model!r} before the deadline"),
    "RESOURCE_EXHAUSTED": lambda model: ResourceExhausted(f"the Triton backend is overloaded for model {model!r}; "
                                                          "retry later"),
    "NOT_FOUND": lambda model: NotFound(f"model {model!r} is not served by the Triton backend"),
    "FAILED_PRECONDITION": lambda model: FailedPrecondition(f"the Triton backend cannot run model {model!r} now"),
}


def _specs(entries: list[dict[str, Any]]) -> list[TensorSpec]:
    return [TensorSpec(e["name"], e["datatype"], tuple(int(d) for d in e["shape"])) for e in entries]


def triton_error(exc: InferenceServerException, model: str) -> InferSuiteError:
    """The caller's error for a failed Triton call (Triton's own message is logged only)."""
    code = str(exc.status() or "").rsplit(".", 1)[-1]
    log.warning("Triton call for model %s failed: %s %s", model, code or "(no status)", exc.message())
    make = TRITON_CODES.get(code)
    return make(model) if make is not None else Unavailable(f"the Triton backend is unavailable for model {model!r}")


class TritonModel:
    def __init__(self, entry: RepositoryModel, client: triton_aio.InferenceServerClient, metadata: dict[str, Any],
                 settings: RuntimeSettings):
        self.name, self.version, self.meta = entry.name, entry.version, entry.meta
        self.instance_count = sum(g.count for g in entry.config.instance_group if g.count > 0) or 1
        self.inputs, self.outputs = _specs(metadata["inputs"]), _specs(metadata["outputs"])
        self.client, self._timeout_s = client, settings.triton_timeout_s

    def _timeout(self) -> float:
        deadline = request_deadline.get()
        left = self._timeout_s if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"deadline passed before model {self.name!r} ran on Triton")
        return min(left, self._timeout_s)

    async def infer(self, inputs: Mapping[str, np.ndarray],
                    outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        tensors = []
        for spec in self.inputs:
            tensor = InferInput(spec.name, list(inputs[spec.name].shape), spec.datatype)
            tensor.set_data_from_numpy(np.ascontiguousarray(inputs[spec.name], dtype=spec.dtype))
            tensors.append(tensor)
        names = list(outputs) if outputs else [spec.name for spec in self.outputs]
        try:
            result = await self.client.infer(self.name, tensors, model_version=self.version,
                                             outputs=[InferRequestedOutput(name) for name in names],
                                             client_timeout=self._timeout())
        except InferenceServerException as exc:
            raise triton_error(exc, self.name) from None
        return {name: result.as_numpy(name) for name in names}

    async def close(self) -> None:
        """Nothing of its own to release: the channel is the backend's, shared by every model."""


class TritonBackend:
    def __init__(self, settings: RuntimeSettings):
        self._settings = settings
        self._client: triton_aio.InferenceServerClient | None = None

    @property
    def client(self) -> triton_aio.InferenceServerClient:
        """The one client (and channel) of this backend, made on first use inside the event loop."""
        if self._client is None:
            self._client = triton_aio.InferenceServerClient(self._settings.triton_url)
        return self._client

    async def load(self, entry: RepositoryModel) -> TritonModel:
        client = self.client
        try:
            ready = await client.is_model_ready(entry.name, entry.version, client_timeout=5)
            metadata = await client.get_model_metadata(entry.name, entry.version, as_json=True, client_timeout=5) \
                if ready else None
        except InferenceServerException as exc:
            log.warning("Triton at %s: %s", self._settings.triton_url, exc.message())
            raise Unavailable(f"the Triton backend is unreachable (model {entry.name!r})") from None
        if metadata is None:
            raise Unavailable(f"the Triton backend has no ready model {entry.name!r} version {entry.version}")
        return TritonModel(entry, client, metadata, self._settings)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
