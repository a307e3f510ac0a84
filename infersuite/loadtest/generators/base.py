"""What a per-service request generator is, and the registry that finds one by name.

A generator builds a seeded pool of serialized requests once per process (so the hot loop
sends bytes, not protobuf objects) and checks each response against what its request implies
(shape, range). Serialization is off the hot path; the check is on it, which is deliberate:
a load test that counts answers without looking at them proves nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import numpy as np


class GeneratorError(Exception):
    """A generator cannot run: missing stubs, a bad parameter, a model the target lacks."""


@dataclass
class RequestPool:
    """Serialized requests and, index by index, what each response must satisfy."""

    method: str  # full gRPC method path, e.g. "/infersuite.ctr.v1.CtrService/Score"
    payloads: list[bytes]
    expectations: list[Any]
    check: Callable[[Any, bytes], str | None]  # (expectation, response) -> failure or None
    description: dict[str, Any] = field(default_factory=dict)  # what the pool holds, for reports

    def __len__(self) -> int:
        return len(self.payloads)


class RequestGenerator(Protocol):
    name: str
    grpc_service: str  # full gRPC service name, used to discover services on a target

    async def build(self, channel: grpc.aio.Channel, rng: np.random.Generator, size: int) -> RequestPool:
        """A pool of `size` requests; may ask the target for metadata first (OIP)."""
        ...


Factory = Callable[[dict[str, str]], RequestGenerator]
_REGISTRY: dict[str, tuple[Factory, str]] = {}


def register(name: str, summary: str) -> Callable[[Factory], Factory]:
    """Class/function decorator: `@register("ctr", "...")` on a factory taking the --param dict."""
    def wrap(factory: Factory) -> Factory:
        _REGISTRY[name] = (factory, summary)
        return factory
    return wrap


def available() -> dict[str, str]:
    """Generator name -> one-line summary."""
    return {name: summary for name, (_, summary) in sorted(_REGISTRY.items())}


def by_grpc_service() -> dict[str, str]:
    """Full gRPC service name -> generator name (for discovery by reflection)."""
    return {getattr(factory, "grpc_service", ""): name for name, (factory, _) in _REGISTRY.items()
            if getattr(factory, "grpc_service", "")}


def create(name: str, params: dict[str, str]) -> RequestGenerator:
    if name not in _REGISTRY:
        raise GeneratorError(f"unknown service {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name][0](params)


def int_param(params: dict[str, str], key: str, default: int, low: int = 1) -> int:
    text = params.get(key)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise GeneratorError(f"--param {key}={text!r}: expected an integer") from None
    if value < low:
        raise GeneratorError(f"--param {key}={value}: must be >= {low}")
    return value


def check_unknown(params: dict[str, str], known: set[str], generator: str) -> None:
    unknown = sorted(set(params) - known)
    if unknown:
        raise GeneratorError(f"{generator}: unknown --param {', '.join(unknown)} (known: {', '.join(sorted(known))})")


def failure(kind: str) -> str:
    """Failures are counted by kind, so keep them short and free of per-request values."""
    return kind
