"""Fuzzes the splitcompute service's payload path: wire frame parsing, codec lookup, range decoding
(SplitComputeHandler.decode_payload: the code a Classify request runs on the executor before the model).

The first byte picks the mode: 0 = the bytes are the payload as sent (header checks, CRC); else the
rest is a BODY wrapped in a valid header with its CRC, so the fuzzer reaches the range decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import atheris
import numpy as np

with atheris.instrument_imports(include=["infersuite"]):
    from infersuite.services.runtime import FailedPrecondition, InvalidArgument
    from infersuite.services.runtime.metrics import Metrics
    from infersuite.services.splitcompute import wire
    from infersuite.services.splitcompute.codec import Codec
    from infersuite.services.splitcompute.handler import CodecTables, SplitComputeHandler
    from infersuite.services.splitcompute.settings import SplitComputeSettings

from fuzz._harness import main


def synthetic_codec(latent_shape: tuple[int, int, int] = (4, 3, 3), radius: int = 6) -> Codec:
    """A codec like an exported one: per-channel discretized Laplacian tables, a fixed version."""
    symbols = np.arange(-radius, radius + 1)
    scales = np.linspace(0.5, 3.0, latent_shape[0])[:, None]
    pmf = np.exp(-np.abs(symbols)[None, :] / scales)
    return Codec(0xC0DEC, latent_shape, pmf / pmf.sum(axis=1, keepdims=True))


CODEC = synthetic_codec()


def handler() -> tuple[SplitComputeHandler, CodecTables]:
    """The real handler and the codec tables it derives from a model set holding CODEC."""
    model = SimpleNamespace(meta={"codec": CODEC.to_meta(), "class_names": ["a", "b"]}, version="1", inputs=[])
    models = SimpleNamespace(get=lambda name: model)
    settings = SplitComputeSettings(max_payload_bytes=4096, max_latent_elements=1 << 12)
    derived: list[CodecTables] = []

    def service_models(service: str, derive: Callable[[Any], CodecTables]) -> None:
        derived.append(derive(models))  # what the runtime does when the service's model set loads

    runtime = SimpleNamespace(service_models=service_models, executor=None, metrics=Metrics())
    return SplitComputeHandler(settings, runtime), derived[0]  # type: ignore[arg-type]


HANDLER, TABLES = handler()


def test_one_input(data: bytes) -> None:
    payload = data[1:] if data[:1] == b"\x00" else wire.pack(CODEC.version, CODEC.latent_shape, data[1:])
    try:
        symbols, codec, _ = HANDLER.decode_payload(TABLES, payload)  # what Classify runs on the executor
    except (InvalidArgument, FailedPrecondition) as exc:
        assert exc.message
        return
    assert symbols.shape == codec.latent_shape
    assert np.abs(symbols).max() <= codec.radius


if __name__ == "__main__":
    main(test_one_input)
