"""The split-compute wire format: one self-describing, versioned frame per image.

    offset  size  field
    0       2     magic b"\\xa7S"
    2       1     wire format version (1)
    3       4     codec version, u32 little-endian: which encoder + CDF tables made the body
    7       2     latent channels C, u16
    9       2     latent height h, u16
    11      2     latent width w, u16
    13      4     CRC-32 of the body, u32
    17      ...   body: range-coded symbols (constriction's u32 words, little-endian, with the
                  zero high bytes of the last word trimmed)

Parsing is for untrusted bytes: every bound (payload size, latent elements, body size for that
many symbols) is checked from the header alone, before anything is allocated or decoded, and
the CRC makes a corrupted body an error instead of a silently wrong class. Only numpy-free
standard library code here, so the edge SDK and the server share it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"\xa7S"
WIRE_FORMAT = 1
HEADER = struct.Struct("<2sBIHHHI")
HEADER_BYTES = HEADER.size  # 17
MAX_BITS_PER_SYMBOL = 32  # a symbol costs at most -log2 of the coder's smallest probability (2**-24), rounded up


class WireError(ValueError):
    """The payload is not a well-formed frame; the message names what is wrong."""


@dataclass(frozen=True)
class Frame:
    codec_version: int
    latent_shape: tuple[int, int, int]  # (C, h, w)
    body: bytes

    @property
    def elements(self) -> int:
        c, h, w = self.latent_shape
        return c * h * w


def pack(codec_version: int, latent_shape: tuple[int, int, int], body: bytes) -> bytes:
    """One frame: header + body."""
    c, h, w = latent_shape
    return HEADER.pack(MAGIC, WIRE_FORMAT, codec_version, c, h, w, zlib.crc32(body)) + body


def max_body_bytes(elements: int) -> int:
    """The largest body `elements` symbols can need (plus the coder's final word)."""
    return elements * MAX_BITS_PER_SYMBOL // 8 + 8


def parse(payload: bytes, max_payload_bytes: int, max_latent_elements: int) -> Frame:
    """Header checks in order of cost; raises WireError naming the first problem."""
    if len(payload) > max_payload_bytes:
        raise WireError(f"payload is {len(payload)} bytes, more than the maximum of {max_payload_bytes}")
    if len(payload) < HEADER_BYTES:
        raise WireError(f"payload is {len(payload)} bytes, shorter than the {HEADER_BYTES}-byte header (truncated?)")
    magic, wire_format, codec_version, c, h, w, crc = HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise WireError(f"payload does not start with the split-compute magic {MAGIC!r} (got {magic!r})")
    if wire_format != WIRE_FORMAT:
        raise WireError(f"payload wire format {wire_format} is not supported (supported: {WIRE_FORMAT})")
    if min(c, h, w) == 0:
        raise WireError(f"payload latent shape {(c, h, w)} has an empty dimension")
    elements = c * h * w
    if elements > max_latent_elements:
        raise WireError(f"payload declares a latent of {elements} elements {(c, h, w)}, "
                        f"more than the maximum of {max_latent_elements}")
    body = payload[HEADER_BYTES:]
    if len(body) > max_body_bytes(elements):
        raise WireError(f"payload body is {len(body)} bytes, more than {elements} symbols can need "
                        f"({max_body_bytes(elements)})")
    if zlib.crc32(body) != crc:
        raise WireError("payload body fails its CRC-32 check (corrupted or truncated)")
    return Frame(codec_version, (c, h, w), bytes(body))
