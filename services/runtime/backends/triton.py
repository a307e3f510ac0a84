"""Remote backend: runs a service's models on NVIDIA Triton Inference Server via tritonclient.

Same interface as the onnxruntime backend, so services and the scheduler do not change. Every
call carries a client timeout (the request's remaining deadline, capped by settings), so a dead
Triton gives a prompt UNAVAILABLE instead of a hung call; the gRPC channel reconnects by itself
when Triton returns.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from services.runtime.context import request_deadline
from services.runtime.errors import DeadlineExceeded, InvalidArgument, Unavailable
from services.runtime.repository import RepositoryModel
from services.runtime.settings import RuntimeSettings
from services.runtime.tensors import TensorSpec


def _specs(entries: list[dict[str, Any]]) -> list[TensorSpec]:
    return [TensorSpec(e["name"], e["datatype"], tuple(int(d) for d in e["shape"])) for e in entries]


def _error(exc: InferenceServerException, url: str, model: str) -> Exception:
    status = str(exc.status() or "")
    if "INVALID_ARGUMENT" in status:
        return InvalidArgument(f"model {model!r} rejected the inputs: {exc.message()}")
    if "DEADLINE_EXCEEDED" in status:
        return DeadlineExceeded(f"Triton did not answer for model {model!r} before the deadline")
    return Unavailable(f"Triton backend at {url} is unavailable for model {model!r}")


class TritonModel:
    def __init__(self, entry: RepositoryModel, client: triton_aio.InferenceServerClient, metadata: dict[str, Any],
                 settings: RuntimeSettings):
        self.name, self.version, self.meta = entry.name, entry.version, entry.meta
        self.instance_count = sum(g.count for g in entry.config.instance_group if g.count > 0) or 1
        self.inputs, self.outputs = _specs(metadata["inputs"]), _specs(metadata["outputs"])
        self._client, self._url, self._timeout_s = client, settings.triton_url, settings.triton_timeout_s

    def _timeout(self) -> float:
        deadline = request_deadline.get()
        left = self._timeout_s if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"deadline passed before model {self.name!r} ran on Triton")
        return min(left, self._timeout_s)

    async def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = []
        for spec in self.inputs:
            tensor = InferInput(spec.name, list(inputs[spec.name].shape), spec.datatype)
            tensor.set_data_from_numpy(np.ascontiguousarray(inputs[spec.name], dtype=spec.dtype))
            tensors.append(tensor)
        outputs = [InferRequestedOutput(spec.name) for spec in self.outputs]
        try:
            result = await self._client.infer(self.name, tensors, model_version=self.version, outputs=outputs,
                                              client_timeout=self._timeout())
        except InferenceServerException as exc:
            raise _error(exc, self._url, self.name) from None
        return {spec.name: result.as_numpy(spec.name) for spec in self.outputs}

    async def close(self) -> None:
        await self._client.close()


class TritonBackend:
    def __init__(self, settings: RuntimeSettings):
        self._settings = settings

    async def load(self, entry: RepositoryModel) -> TritonModel:
        url = self._settings.triton_url
        client = triton_aio.InferenceServerClient(url)
        try:
            if not await client.is_model_ready(entry.name, entry.version, client_timeout=5):
                raise Unavailable(f"Triton at {url} has no ready model {entry.name!r} version {entry.version}")
            metadata = await client.get_model_metadata(entry.name, entry.version, as_json=True, client_timeout=5)
        except InferenceServerException as exc:
            await client.close()
            raise Unavailable(f"Triton at {url} is unreachable: {exc.message()}") from None
        except Unavailable:
            await client.close()
            raise
        return TritonModel(entry, client, metadata, self._settings)
