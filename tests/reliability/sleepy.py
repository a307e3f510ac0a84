"""A service over a model of KNOWN cost: each execution takes `compute_s` (one at a time, no
batching), so capacity is exactly 1 / compute_s requests/s on any machine, however busy. The
overload, deadline and shutdown scenarios use it to test the runtime's admission control with
figures that do not depend on the CPU; benchmarks/reliability/measure.py runs the same scenarios on the
real ctr model too.

    python -m tests.reliability.sleepy --compute-ms 10 --queue 8 --grace 5   # a suite process (SIGTERM tests)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from grpc import aio

from infersuite.services.runtime import InvalidArgument, Runtime, RuntimeSettings
from infersuite.services.runtime.batching import BatchingPolicy
from infersuite.services.runtime.tensors import TensorSpec

MODEL = "sleepy"
METHOD = "/infersuite.reliability.Sleepy/Infer"
SERVICE_NAME = "infersuite.reliability.Sleepy"


class SleepyModel:
    """A LoadedModel whose every execution costs `compute_s` of wall time (y = x + 1)."""

    def __init__(self, compute_s: float):
        self.name, self.version, self.instance_count = MODEL, "1", 1
        self.meta: dict[str, Any] = {}
        self.inputs = [TensorSpec("x", "FP32", (-1, 4))]
        self.outputs = [TensorSpec("y", "FP32", (-1, 4))]
        self.compute_s = compute_s
        self.executions = 0
        # Request id (x[0, 0]) -> time.monotonic() on the server: its execution began / ended / it reached
        # the handler / the runtime refused it (any error before an answer). The reliability scenarios
        # count waits in executions from these (tests/reliability/scenarios.py: ExecutionTrace).
        self.started: dict[int, float] = {}
        self.finished: dict[int, float] = {}
        self.arrived: dict[int, float] = {}
        self.refused: dict[int, float] = {}

    async def infer(self, inputs: Mapping[str, np.ndarray],
                    outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:  # y is its only output
        self.executions += 1
        self.started[int(inputs["x"][0, 0])] = time.monotonic()
        await asyncio.sleep(self.compute_s)
        self.finished[int(inputs["x"][0, 0])] = time.monotonic()
        return {"y": inputs["x"] + 1}

    async def close(self) -> None:
        return None


class SleepyService:
    name = "sleepy"
    grpc_service_names: tuple[str, ...] = (SERVICE_NAME,)

    def __init__(self, compute_s: float = 0.01, max_queue_size: int = 8):
        self.model = SleepyModel(compute_s)
        self.max_queue_size = max_queue_size

    def required_models(self, repository: object) -> list[str]:
        return []  # attached directly at registration

    def register(self, server: aio.Server, runtime: Runtime) -> None:
        policy = BatchingPolicy(max_batch_size=1, max_queue_delay_s=0.0, max_queue_size=self.max_queue_size,
                                combine=False)
        runtime.models.attach(self.model, policy)

        async def infer(request: bytes, context: aio.ServicerContext) -> bytes:
            if len(request) != 16:
                raise InvalidArgument(f"request must be 4 float32 values (16 bytes), got {len(request)} bytes")
            x = np.frombuffer(request, np.float32)[None]
            model = self.model
            model.arrived[int(x[0, 0])] = time.monotonic()
            try:
                outputs = await runtime.models.infer(MODEL, {"x": x})
            except Exception:
                model.refused[int(x[0, 0])] = time.monotonic()
                raise
            return outputs["y"].tobytes()

        handler = grpc.unary_unary_rpc_method_handler(infer)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, {"Infer": handler}),))


def request(index: int) -> tuple[str, bytes]:
    """Request number `index` carries its number (exact in float32 below 2**24) so executions can be traced."""
    return METHOD, np.full(4, index, np.float32).tobytes()


def main() -> None:
    from infersuite.services.__main__ import serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compute-ms", type=float, default=10.0)
    parser.add_argument("--queue", type=int, default=8)
    parser.add_argument("--grace", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # An empty repository of its own: the default (./model_repository) would load whatever the checkout built
    # there beside the sleepy model, and the run would depend on the working directory.
    with tempfile.TemporaryDirectory(prefix="sleepy-repository-") as repository:
        settings = RuntimeSettings(port=0, metrics_port=0, host="127.0.0.1", grace_period_s=args.grace,
                                   model_repository=repository)
        asyncio.run(serve(settings, [SleepyService(args.compute_ms / 1000, args.queue)]))


if __name__ == "__main__":
    main()
