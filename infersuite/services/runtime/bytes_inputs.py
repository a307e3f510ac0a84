"""OIP BYTES tensors (Triton's strings) for inputs that a family maps onto a model's numeric graph.

A graph takes numbers. A family whose models also take strings for some inputs (ctr: a vocabulary
of string ids) registers a factory (`BytesInputRegistry.add`); for each served version the factory
returns a `BytesInputs` or None, built once per version. The OIP then shows those inputs as BYTES in
ModelMetadata, decodes a BYTES tensor sent for one of them here and hands its elements to the
family's `map`, which returns the graph's tensor (or refuses with INVALID_ARGUMENT); the graph's own
datatype stays accepted as before. The runtime never learns what the strings mean.

Wire format (as Triton and tritonclient): in raw_input_contents each element is a 4-byte
little-endian length, then that many bytes; in typed contents, `bytes_contents`, one entry per
element. Everything is bounded before it is kept: the declared shape by the model's limits (checked
before decoding, infersuite/services/runtime/oip/converters.py), each element's length by `max_element_bytes`,
the element count by the shape.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from tritonclient.grpc import model_config_pb2

from infersuite.services.runtime.backends.base import LoadedModel
from infersuite.services.runtime.errors import InvalidArgument

BYTES = "BYTES"
_LENGTH = struct.Struct("<I")


class BytesInputs(Protocol):
    """How one model version takes BYTES tensors for some of its inputs (a family builds it)."""

    names: frozenset[str]  # the inputs that take BYTES
    max_element_bytes: int  # the longest element accepted

    def map(self, name: str, values: list[bytes], shape: tuple[int, ...]) -> np.ndarray:
        """The graph's tensor (of `shape`) for the elements of input `name`, flat in row-major order."""
        ...


BytesInputsFactory = Callable[[LoadedModel], "BytesInputs | None"]


class BytesInputRegistry:
    """The families' factories and each served version's BytesInputs (None: the model takes no strings)."""

    def __init__(self) -> None:
        self._factories: list[BytesInputsFactory] = []
        self._built: dict[str, tuple[str, BytesInputs | None]] = {}  # model -> (version, its mapping)

    def add(self, factory: BytesInputsFactory) -> None:
        self._factories.append(factory)
        self._built.clear()

    def of(self, model: LoadedModel) -> BytesInputs | None:
        built = self._built.get(model.name)
        if built is not None and built[0] == model.version:
            return built[1]
        found = None
        for factory in self._factories:
            if (found := factory(model)) is not None:
                break
        self._built[model.name] = (model.version, found)
        return found


def datatype(name: str, graph_datatype: str, inputs: BytesInputs | None) -> str:
    """The datatype ModelMetadata shows for an input: BYTES where the model takes strings."""
    return BYTES if inputs is not None and name in inputs.names else graph_datatype


def shown_config(config: model_config_pb2.ModelConfig, inputs: BytesInputs | None) -> model_config_pb2.ModelConfig:
    """The config ModelConfig shows: TYPE_STRING where the model takes strings (a copy; `config` itself is
    returned unchanged when the model takes none), as ModelMetadata shows BYTES."""
    if inputs is None or not any(spec.name in inputs.names for spec in config.input):
        return config
    shown = model_config_pb2.ModelConfig()
    shown.CopyFrom(config)
    for spec in shown.input:
        if spec.name in inputs.names:
            spec.data_type = model_config_pb2.TYPE_STRING
    return shown


def _split_raw(name: str, raw: bytes, count: int, most: int) -> list[bytes]:
    values, offset = [], 0
    for index in range(count):
        if offset + 4 > len(raw):
            raise InvalidArgument(f"input {name!r}: the raw BYTES content ends before element {index} of {count} "
                                  "(each element is a 4-byte little-endian length, then its bytes)")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if length > most:
            raise InvalidArgument(f"input {name!r} element {index} is {length} bytes, over the limit of {most}")
        if offset + length > len(raw):
            raise InvalidArgument(f"input {name!r}: the raw BYTES content ends inside element {index} "
                                  f"({length} bytes declared, {len(raw) - offset} left)")
        values.append(raw[offset:offset + length])
        offset += length
    if offset != len(raw):
        raise InvalidArgument(f"input {name!r}: the raw BYTES content has {len(raw) - offset} bytes after its "
                              f"{count} elements")
    return values


def _listed(name: str, contents: Sequence[bytes], count: int, most: int) -> list[bytes]:
    if len(contents) != count:
        raise InvalidArgument(f"input {name!r}: contents.bytes_contents has {len(contents)} values but its shape "
                              f"needs {count}")
    for index, value in enumerate(contents):
        if len(value) > most:
            raise InvalidArgument(f"input {name!r} element {index} is {len(value)} bytes, over the limit of {most}")
    return list(contents)


def decode(name: str, graph_datatype: str, shape: tuple[int, ...], raw: bytes | None, contents: Sequence[bytes],
           inputs: BytesInputs | None, model: str) -> np.ndarray:
    """The graph's tensor for a BYTES input of `shape` (already checked against the model's spec and limits)."""
    if inputs is None or name not in inputs.names:
        raise InvalidArgument(f"input {name!r} has datatype BYTES, but model {model!r} takes no strings for it "
                              f"(it expects {graph_datatype})")
    count = math.prod(shape)
    if raw is not None:
        values = _split_raw(name, raw, count, inputs.max_element_bytes)
    else:
        values = _listed(name, contents, count, inputs.max_element_bytes)
    return inputs.map(name, values, shape)
