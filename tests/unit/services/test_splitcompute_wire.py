"""The split-compute wire format and its decoder against untrusted bytes (includes a bounded fuzz)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from infersuite.services.splitcompute import wire
from infersuite.services.splitcompute.codec import Codec, CodecError

SHAPE = (4, 6, 6)


def laplace_codec(version: int = 7, radius: int = 6, shape: tuple[int, int, int] = SHAPE) -> Codec:
    """A codec with a made-up per-channel Laplace table (no torch needed)."""
    scales = np.linspace(0.3, 2.0, shape[0])[:, None]
    pmf = np.exp(-np.abs(np.arange(-radius, radius + 1))[None, :] / scales)
    return Codec(version, shape, pmf / pmf.sum(axis=1, keepdims=True))


def sample_symbols(codec: Codec, rng: np.random.Generator) -> np.ndarray:
    c, h, w = codec.latent_shape
    support = np.arange(-codec.radius, codec.radius + 1)
    return np.stack([rng.choice(support, (h, w), p=codec.pmf[k]) for k in range(c)]).astype(np.int32)


def frame_for(codec: Codec, symbols: np.ndarray) -> bytes:
    return wire.pack(codec.version, codec.latent_shape, codec.encode(symbols))


def test_a_frame_round_trips_version_shape_and_body() -> None:
    frame = wire.parse(wire.pack(42, (3, 4, 5), b"abcdefg"), 1024, 1000)
    assert (frame.codec_version, frame.latent_shape, frame.body, frame.elements) == (42, (3, 4, 5), b"abcdefg", 60)
    assert wire.HEADER_BYTES == 17


def _with_header(**fields: int) -> bytes:
    values = {"magic": wire.MAGIC, "fmt": wire.WIRE_FORMAT, "version": 1, "c": 2, "h": 3, "w": 4, "crc": 0}
    values.update(fields)
    body = b"\x01\x02\x03\x04"
    if "crc" not in fields:
        values["crc"] = zlib.crc32(body)
    return wire.HEADER.pack(values["magic"], values["fmt"], values["version"], values["c"], values["h"],
                            values["w"], values["crc"]) + body


BAD_FRAMES = {
    "oversized": (b"\0" * 2000, "more than the maximum of 1024"),
    "empty": (b"", "shorter than the 17-byte header"),
    "truncated header": (wire.pack(1, SHAPE, b"xy")[:10], "shorter than the 17-byte header"),
    "bad magic": (b"XX" + wire.pack(1, SHAPE, b"xy")[2:], "does not start with the split-compute magic"),
    "future wire format": (_with_header(fmt=9), "wire format 9 is not supported"),
    "empty dimension": (_with_header(h=0), "has an empty dimension"),
    "huge declared latent": (_with_header(c=65535, h=65535, w=65535), "more than the maximum of 500"),
    "body too long for the shape": (wire.pack(1, (1, 1, 1), b"\0" * 100), "more than 1 symbols can need"),
    "corrupted body": (_with_header(crc=123), "fails its CRC-32 check"),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
def test_malformed_frames_are_rejected_with_a_message_naming_the_problem(case: str) -> None:
    payload, message = BAD_FRAMES[case]
    with pytest.raises(wire.WireError, match=message):
        wire.parse(payload, max_payload_bytes=1024, max_latent_elements=500)


def test_symbols_round_trip_and_the_coded_size_tracks_the_estimate() -> None:
    codec, rng = laplace_codec(shape=(8, 12, 12)), np.random.default_rng(0)
    symbols = sample_symbols(codec, rng)
    body = codec.encode(symbols)
    np.testing.assert_array_equal(codec.decode(body), symbols)
    estimate = codec.estimated_bits(symbols) / 8
    assert abs(len(body) - estimate) <= 0.02 * estimate + 4, (len(body), estimate)


def test_quantize_rounds_and_clips_to_the_table_support() -> None:
    codec = laplace_codec(radius=3)
    latent = np.full(SHAPE, 0.4, np.float32)
    latent[0, 0, :4] = [2.5, -9.0, 99.0, 1.6]
    symbols = codec.quantize(latent)
    assert symbols[0, 0, :4].tolist() == [2, -3, 3, 2] and symbols[1].max() == 0


def test_a_body_with_trailing_data_is_a_codec_error() -> None:
    codec = laplace_codec()
    body = codec.encode(sample_symbols(codec, np.random.default_rng(1)))
    with pytest.raises(CodecError, match="holds more data"):
        codec.decode(body + b"\x55" * 64)


def test_meta_round_trip_keeps_the_tables_exactly() -> None:
    codec = laplace_codec()
    again = Codec.from_meta({"codec": codec.to_meta()})
    assert again.version == codec.version and again.latent_shape == codec.latent_shape
    np.testing.assert_array_equal(again.pmf, codec.pmf)


def _decode_untrusted(codec: Codec, payload: bytes) -> np.ndarray | None:
    """What the server does: parse, check the shape, decode; None when rejected."""
    try:
        frame = wire.parse(payload, 4096, 10_000)
        if frame.latent_shape != codec.latent_shape:
            return None
        return codec.decode(frame.body)
    except (wire.WireError, CodecError):
        return None


def _mutations(valid: bytes, rng: np.random.Generator) -> bytes:
    kind = rng.integers(6)
    data = bytearray(valid)
    if kind == 0:  # bit flips anywhere
        for _ in range(rng.integers(1, 4)):
            i = rng.integers(len(data))
            data[i] ^= 1 << rng.integers(8)
        return bytes(data)
    if kind == 1:  # truncation
        return bytes(data[:rng.integers(len(data))])
    if kind == 2:  # appended garbage
        return bytes(data) + rng.bytes(int(rng.integers(1, 64)))
    if kind == 3:  # random bytes of a plausible length
        return rng.bytes(int(rng.integers(0, 200)))
    if kind == 4:  # a valid header over a random body with a matching CRC (passes the CRC on purpose)
        body = rng.bytes(int(rng.integers(0, 120)))
        return wire.pack(7, SHAPE, body)
    # a header that lies about the shape, with a correct CRC
    c, h, w = (int(v) for v in rng.integers(1, 300, 3))
    return wire.pack(7, (c, h, w), bytes(data[wire.HEADER_BYTES:]))


def test_fuzzed_payloads_decode_to_the_declared_shape_or_are_rejected() -> None:
    """2,000 mutated frames: every one is rejected or decodes to exactly the codec's shape,
    with symbols inside the table support; nothing else (no crash, no other exception)."""
    codec, rng = laplace_codec(), np.random.default_rng(2024)
    valid = frame_for(codec, sample_symbols(codec, rng))
    rejected = 0
    for _ in range(2000):
        decoded = _decode_untrusted(codec, _mutations(valid, rng))
        if decoded is None:
            rejected += 1
            continue
        assert decoded.shape == SHAPE and decoded.dtype == np.float32
        assert np.abs(decoded).max() <= codec.radius
    assert rejected > 1000  # most mutations must be caught by the header, the CRC or the decoder


def test_bit_flips_in_a_real_frame_are_always_caught() -> None:
    codec, rng = laplace_codec(), np.random.default_rng(5)
    valid = frame_for(codec, sample_symbols(codec, rng))
    for i in range(len(valid)):
        corrupted = bytearray(valid)
        corrupted[i] ^= 0x10
        frame_ok = _decode_untrusted(codec, bytes(corrupted))
        if i in range(3, 7):  # the codec version field: parses, but names a version nobody has
            assert struct.unpack_from("<I", corrupted, 3)[0] != codec.version
            continue
        assert frame_ok is None, f"flip in byte {i} was not detected"
