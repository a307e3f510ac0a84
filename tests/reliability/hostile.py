"""The hostile-input corpus: malformed requests for every RPC of every service, each with the
status it must get. Wrong types, shapes, sizes, lengths, encodings, NaN/Inf, ids out of range,
empty and maximal messages. Requests are serialized bytes, so undecodable protobuf is in too.
"""

from __future__ import annotations

import asyncio
import io
import re
import struct
import zlib
from dataclasses import dataclass

import grpc
import numpy as np
import soundfile
from PIL import Image
from tritonclient.grpc import service_pb2

from infersuite.protos import audio_pb2, ctr_pb2, segmentation_pb2, splitcompute_pb2

INVALID = frozenset({"INVALID_ARGUMENT"})
CTR = "/infersuite.ctr.v1.CtrService/"
OIP = "/inference.GRPCInferenceService/"
SEG = "/infersuite.segmentation.v1.SegmentationService/"
SPLIT = "/infersuite.splitcompute.v1.SplitComputeService/"
AUDIO = "/infersuite.audio.v1.AudioService/"
GARBAGE = b"\xff\xff\xff\xff\x0f\x12\x34"  # a truncated varint: no protobuf parser accepts it


@dataclass(frozen=True)
class Case:
    name: str
    method: str  # full gRPC method path
    payload: bytes | list[bytes]  # one message, or a client stream
    codes: frozenset[str] = INVALID  # acceptable final status codes


def _stream_status(target: str, case: Case, timeout: float) -> tuple[str, str]:
    # Through the sync API: a grpc.aio client reports INTERNAL "Internal error from Core" instead of the
    # server's status when the server ends the call before the client's last write (grpc/grpc#36066).
    with grpc.insecure_channel(target) as channel:
        try:
            for _ in channel.stream_stream(case.method)(iter(case.payload), timeout=timeout):
                pass
            return "OK", ""
        except grpc.RpcError as err:
            return err.code().name, err.details() or ""


async def status(channel: grpc.aio.Channel, target: str, case: Case, timeout: float = 30) -> tuple[str, str]:
    """The status code and details the server answered `case` with."""
    if isinstance(case.payload, list):
        return await asyncio.to_thread(_stream_status, target, case, timeout)
    try:
        await channel.unary_unary(case.method)(case.payload, timeout=timeout)
        return "OK", ""
    except grpc.aio.AioRpcError as err:
        return err.code().name, err.details() or ""


def _ser(message) -> bytes:  # type: ignore[no-untyped-def]
    return message.SerializeToString()


def ctr_cases(n_items: int, n_categories: int, max_candidates: int) -> list[Case]:
    def score(name: str, codes: frozenset[str] = INVALID, **fields) -> Case:
        base = dict(history_item_ids=[1, 2], history_category_ids=[1, 1], candidate_item_ids=[3],
                    candidate_category_ids=[2])
        return Case(f"ctr {name}", CTR + "Score", _ser(ctr_pb2.ScoreRequest(**{**base, **fields})), codes)

    too_many = [1] * (max_candidates + 1)
    cases = [
        Case("ctr empty message", CTR + "Score", b""),
        Case("ctr undecodable protobuf", CTR + "Score", GARBAGE),  # the interceptor's answer, not grpc's UNKNOWN
        score("history lengths differ", history_item_ids=[1, 2, 3]),
        score("candidate lengths differ", candidate_category_ids=[1, 2]),
        score("no candidates", candidate_item_ids=[], candidate_category_ids=[]),
        score("too many candidates", candidate_item_ids=too_many, candidate_category_ids=too_many),
        score("padding id 0", candidate_item_ids=[0]),
        score("negative id", history_item_ids=[-1, 2]),
        score("id above vocabulary", candidate_item_ids=[n_items + 1]),
        score("category above vocabulary", candidate_category_ids=[n_categories + 1]),
        score("int64 max id", history_item_ids=[2**63 - 1, 1]),
        score("int64 min id", candidate_item_ids=[-(2**63)]),
        score("unknown model", frozenset({"NOT_FOUND"}), model="no-such-model"),
        score("64 KiB model name", frozenset({"NOT_FOUND"}), model="m" * 65536),
        score("model name with control bytes", frozenset({"NOT_FOUND"}), model="din\x00\n../../etc"),
        score("maximal valid request", frozenset({"OK"}), history_item_ids=[1] * 5000,
              history_category_ids=[1] * 5000, candidate_item_ids=[1] * max_candidates,
              candidate_category_ids=[1] * max_candidates),
    ]
    return cases


def _infer(model: str, inputs: list[tuple[str, str, list[int]]], raw: list[bytes] | None = None,
           outputs: tuple[str, ...] = ()) -> bytes:
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, datatype, shape in inputs:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.extend(raw or [])
    for name in outputs:
        request.outputs.add(name=name)
    return _ser(request)


def oip_cases(model: str, specs: list[tuple[str, str, int]]) -> list[Case]:
    """`specs`: the model's inputs as (name, datatype, rank); all dynamic dims are sent as 2."""
    def tensors(shape_of=lambda rank: [1] + [2] * (rank - 1)) -> tuple[list, list[bytes]]:
        inputs, raw = [], []
        for name, datatype, rank in specs:
            shape = shape_of(rank)
            inputs.append((name, datatype, shape))
            raw.append(b"\0" * (int(np.prod(shape)) * (8 if datatype == "INT64" else 4)))
        return inputs, raw

    good_inputs, good_raw = tensors()
    first, datatype, rank = specs[0]
    cases = [
        Case("oip ModelInfer empty message", OIP + "ModelInfer", b"", frozenset({"NOT_FOUND"})),
        Case("oip ModelInfer undecodable", OIP + "ModelInfer", GARBAGE),
        Case("oip ModelInfer unknown model", OIP + "ModelInfer", _infer("nope", good_inputs, good_raw),
             frozenset({"NOT_FOUND"})),
        Case("oip missing inputs", OIP + "ModelInfer", _infer(model, [])),
        Case("oip unknown input", OIP + "ModelInfer", _infer(model, [*good_inputs, ("bogus", "FP32", [1])],
                                                            [*good_raw, b"\0" * 4])),
        Case("oip input given twice", OIP + "ModelInfer", _infer(model, [good_inputs[0], *good_inputs],
                                                                [good_raw[0], *good_raw])),
        Case("oip wrong datatype", OIP + "ModelInfer",
             _infer(model, [(first, "BYTES" if datatype != "BYTES" else "FP32", good_inputs[0][2]), *good_inputs[1:]],
                    good_raw)),
        Case("oip wrong rank", OIP + "ModelInfer", _infer(model, [(first, datatype, [1] * (rank + 1)),
                                                                  *good_inputs[1:]], good_raw)),
        Case("oip negative dimension", OIP + "ModelInfer", _infer(model, [(first, datatype, [-1] * rank),
                                                                          *good_inputs[1:]], good_raw)),
        Case("oip 2**40-element shape (no allocation)", OIP + "ModelInfer",
             _infer(model, [(first, datatype, [2**20] * 2 + [1] * (rank - 2)), *good_inputs[1:]], good_raw)),
        Case("oip raw content too short", OIP + "ModelInfer", _infer(model, good_inputs, [b"\0", *good_raw[1:]])),
        Case("oip raw count differs from inputs", OIP + "ModelInfer", _infer(model, good_inputs, good_raw[:1])),
        Case("oip typed contents missing", OIP + "ModelInfer", _infer(model, good_inputs)),
        Case("oip unknown output", OIP + "ModelInfer", _infer(model, good_inputs, good_raw, ("nope",))),
        Case("oip more rows than max_batch_size", OIP + "ModelInfer",
             _infer(model, *tensors(lambda rank: [100_000] + [1] * (rank - 1)))),
    ]
    cases += _oip_limit_cases(model, specs, tensors)
    for rpc, message in [("ModelMetadata", service_pb2.ModelMetadataRequest(name="nope")),
                         ("ModelConfig", service_pb2.ModelConfigRequest(name="nope")),
                         ("ModelStatistics", service_pb2.ModelStatisticsRequest(name="nope")),
                         ("ModelMetadata", service_pb2.ModelMetadataRequest(name=model, version="not-a-version")),
                         ("ModelConfig", service_pb2.ModelConfigRequest(name="x" * 65536))]:
        cases.append(Case(f"oip {rpc} {message.name[:12]!r} v{message.version!r}", OIP + rpc, _ser(message),
                          frozenset({"NOT_FOUND"})))
    cases.append(Case("oip ModelReady unknown model", OIP + "ModelReady",
                      _ser(service_pb2.ModelReadyRequest(name="nope")), frozenset({"OK"})))  # ready=false
    return cases


def _ids(specs: list[tuple[str, str, int]], value: int) -> tuple[list, list[bytes]]:
    """Every input at shape [1, 2, ...]; each INT64 input holds `value` once among ones."""
    inputs, raw = [], []
    for name, datatype, rank in specs:
        shape = [1] + [2] * (rank - 1)
        array = np.ones(shape, np.int64 if datatype == "INT64" else np.float32)
        if datatype == "INT64":
            array.flat[-1] = value
        inputs.append((name, datatype, shape))
        raw.append(array.tobytes())
    return inputs, raw


UNOFFERED_OIP = ("SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
                 "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister",
                 "LogSettings", "TraceSetting")


def _oip_limit_cases(model: str, specs: list[tuple[str, str, int]], tensors) -> list[Case]:  # type: ignore[no-untyped-def]
    """Issue 14: bounded cost, id ranges, typed+raw, unoffered extensions, model control when off."""
    typed_and_raw = service_pb2.ModelInferRequest.FromString(_infer(model, *tensors()))
    typed_and_raw.inputs[0].contents.int64_contents.extend([1, 1])
    cases = [
        # 144 KB for DIN (every dynamic axis 4000) drove the server past 10 GiB before limits existed.
        Case("oip every dynamic axis 4000 (144 KB for DIN)", OIP + "ModelInfer",
             _infer(model, *tensors(lambda rank: [1] + [4000] * (rank - 1)))),
        Case("oip negative id", OIP + "ModelInfer", _infer(model, *_ids(specs, -1))),
        Case("oip id 10**9 (out of vocabulary)", OIP + "ModelInfer", _infer(model, *_ids(specs, 10**9))),
        Case("oip typed contents and raw_input_contents", OIP + "ModelInfer", _ser(typed_and_raw)),
        Case("oip RepositoryModelUnload with control off", OIP + "RepositoryModelUnload",
             _ser(service_pb2.RepositoryModelUnloadRequest(model_name=model)), frozenset({"FAILED_PRECONDITION"})),
        Case("oip RepositoryModelLoad with control off", OIP + "RepositoryModelLoad",
             _ser(service_pb2.RepositoryModelLoadRequest(model_name=model)), frozenset({"FAILED_PRECONDITION"})),
    ]
    cases += [Case(f"oip {rpc}", OIP + rpc, b"", frozenset({"UNIMPLEMENTED"})) for rpc in UNOFFERED_OIP]
    cases += [Case("oip method the protocol lacks", OIP + "NoSuchMethod", b"", frozenset({"UNIMPLEMENTED"})),
              Case("oip unknown service", "/no.such.Service/Call", b"", frozenset({"UNIMPLEMENTED"}))]
    return cases


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height (a decompression bomb's header), CRC valid."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + \
        b"\0\0\0\0IEND\xaeB`\x82"


def segmentation_cases() -> list[Case]:
    def segment(name: str, codes: frozenset[str] = INVALID, **fields) -> Case:
        return Case(f"segmentation {name}", SEG + "Segment", _ser(segmentation_pb2.SegmentRequest(**fields)), codes)

    image = np.zeros((8, 8, 3), np.uint8)
    png = _png(image)
    raw = segmentation_pb2.RawImage
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="GIF")
    return [
        segment("empty message"),
        Case("segmentation undecodable protobuf", SEG + "Segment", GARBAGE),
        segment("empty encoded image", encoded=b""),
        segment("garbage image bytes", encoded=b"\x00" * 100),
        segment("truncated PNG", encoded=png[: len(png) // 2]),
        segment("GIF (not PNG/JPEG)", encoded=buffer.getvalue()),
        segment("PNG declaring 100000x100000", encoded=_png_with_size(100_000, 100_000)),
        segment("PNG declaring 0x0", encoded=_png_with_size(0, 0)),
        segment("16-bit PNG", encoded=_png(np.zeros((8, 8), np.uint16))),
        segment("truncated JPEG", encoded=b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
        segment("raw pixel count short", raw=raw(pixels=b"\0" * 10, height=8, width=8, channels=3)),
        segment("raw 2 channels", raw=raw(pixels=b"\0" * 128, height=8, width=8, channels=2)),
        segment("raw 0x0", raw=raw(pixels=b"", height=0, width=0, channels=3)),
        segment("raw 2**32-1 side", raw=raw(pixels=b"\0" * 3, height=2**32 - 1, width=1, channels=3)),
        segment("exit layer 99", encoded=png, effort=segmentation_pb2.Effort(exit_layer=99)),
        segment("negative GFLOPs budget", encoded=png, effort=segmentation_pb2.Effort(gflops_budget=-1.0)),
        segment("NaN GFLOPs budget", encoded=png, effort=segmentation_pb2.Effort(gflops_budget=float("nan"))),
        segment("Inf GFLOPs budget", encoded=png, effort=segmentation_pb2.Effort(gflops_budget=float("inf"))),
        segment("unknown mask encoding", encoded=png, mask_encoding=7),
    ]


def splitcompute_cases(codec_version: int, latent_shape: tuple[int, int, int], max_payload: int) -> list[Case]:
    def classify(name: str, payload: bytes, codes: frozenset[str] = INVALID) -> Case:
        return Case(f"splitcompute {name}", SPLIT + "Classify",
                    _ser(splitcompute_pb2.ClassifyRequest(payload=payload)), codes)

    def frame(version: int = codec_version, shape: tuple[int, int, int] = latent_shape, body: bytes = b"\x01" * 8,
              crc: int | None = None, magic: bytes = b"\xa7S", wire: int = 1) -> bytes:
        return struct.pack("<2sBIHHHI", magic, wire, version, *shape,
                           zlib.crc32(body) if crc is None else crc) + body

    c, h, w = latent_shape
    return [
        classify("empty payload", b""),
        Case("splitcompute undecodable protobuf", SPLIT + "Classify", GARBAGE),
        classify("header only, truncated", frame()[:10]),
        classify("bad magic", frame(magic=b"PK")),
        classify("wire format 9", frame(wire=9)),
        classify("empty latent dimension", frame(shape=(c, 0, w))),
        classify("65535^3 latent", frame(shape=(65535, 65535, 65535))),
        classify("latent shape not the codec's", frame(shape=(c, h, w + 1))),
        classify("body longer than its symbols can need", frame(body=b"\x01" * (c * h * w * 4 + 64))),
        classify("CRC mismatch", frame(crc=1)),
        classify("unknown codec version", frame(version=codec_version ^ 0xFFFF), frozenset({"FAILED_PRECONDITION"})),
        # Found here: an empty body decodes (constriction pads) to the most probable latent and is classified.
        classify("empty body", frame(body=b""), frozenset({"INVALID_ARGUMENT", "OK"})),
        classify("random body (decodes or is refused)", frame(body=bytes(range(7, 250, 3))),
                 frozenset({"INVALID_ARGUMENT", "OK"})),
        classify("payload over the maximum", frame(body=b"\0" * max_payload)),
        Case("splitcompute GetCodec with unknown fields", SPLIT + "GetCodec", b"\x08\x01\x12\x03abc",
             frozenset({"OK"})),
    ]


def _wav(samples: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def _patched(wav: bytes, offset: int, fmt: str, value: int) -> bytes:
    data = bytearray(wav)
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


def _chunks_before_fmt(wav: bytes, count: int) -> bytes:
    junk = b"".join(b"junk" + struct.pack("<I", 2) + b"ab" for _ in range(count))
    body = wav[12:]
    return b"RIFF" + struct.pack("<I", 4 + len(junk) + len(body)) + b"WAVE" + junk + body


# What no status message may contain: object addresses, file paths, library internals.
LEAKS = re.compile(r"0x[0-9a-fA-F]{6,}|/(?:tmp|work|home|root|usr|etc|proc)/|Traceback|onnxruntime|"
                   r"[A-Za-z_]+\.py\b|\bnode\b|/[A-Za-z_]+/[A-Za-z_]+(?:/|\b)(?!\s)")


def leaks(details: str) -> list[str]:
    """The parts of a status message that show internals (empty when it is clean)."""
    return LEAKS.findall(details)


def audio_cases(max_duration_s: float) -> list[Case]:
    tone = np.sin(np.linspace(0, 100, 16000)).astype(np.float32) * 0.1
    wav = _wav(tone, 16000)
    nan = tone.copy()
    nan[100] = np.nan
    raw = audio_pb2.RawAudio

    def both(name: str, audio: audio_pb2.Audio, codes: frozenset[str] = INVALID, **extra) -> list[Case]:
        return [Case(f"audio EmbedScene {name}", AUDIO + "EmbedScene",
                     _ser(audio_pb2.EmbedSceneRequest(audio=audio, embedder=extra.get("embedder", ""))), codes),
                Case(f"audio EmbedTimestamps {name}", AUDIO + "EmbedTimestamps",
                     _ser(audio_pb2.EmbedTimestampsRequest(audio=audio, **extra)), codes)]

    def stream(name: str, messages: list[audio_pb2.StreamTimestampsRequest]) -> Case:
        return Case(f"audio StreamTimestamps {name}", AUDIO + "StreamTimestamps", [_ser(m) for m in messages])

    config = audio_pb2.StreamConfig(sample_rate=16000, channels=1)
    chunk = tone[:1600].tobytes()
    cases = [
        *both("empty audio", audio_pb2.Audio()),
        *both("garbage WAV", audio_pb2.Audio(wav=b"RIFF\x00\x00\x00\x00WAVEjunk")),
        *both("not RIFF", audio_pb2.Audio(wav=b"\x00" * 64)),
        *both("A-law WAV", audio_pb2.Audio(wav=_patched(wav, 20, "<H", 6))),
        *both("0-channel WAV", audio_pb2.Audio(wav=_patched(wav, 22, "<H", 0))),
        *both("0 Hz WAV", audio_pb2.Audio(wav=_patched(wav, 24, "<I", 0))),
        *both("4 GHz WAV", audio_pb2.Audio(wav=_patched(wav, 24, "<I", 2**32 - 1))),
        *both("data chunk declares 4 GiB", audio_pb2.Audio(wav=_patched(wav, 40, "<I", 2**32 - 2))),
        *both("truncated WAV", audio_pb2.Audio(wav=wav[:60])),
        *both("NaN in float WAV", audio_pb2.Audio(wav=_wav(nan, 16000, "FLOAT"))),
        *both("raw 0 Hz", audio_pb2.Audio(raw=raw(samples_f32le=chunk, sample_rate=0, channels=1))),
        *both("raw negative channels", audio_pb2.Audio(raw=raw(samples_f32le=chunk, sample_rate=16000, channels=-3))),
        *both("raw 1000 channels", audio_pb2.Audio(raw=raw(samples_f32le=chunk, sample_rate=16000, channels=1000))),
        *both("raw partial frame", audio_pb2.Audio(raw=raw(samples_f32le=chunk + b"\0", sample_rate=16000))),
        *both("raw Inf samples", audio_pb2.Audio(raw=raw(samples_f32le=np.full(1600, np.inf, np.float32).tobytes(),
                                                         sample_rate=16000))),
        *both("raw longer than the maximum duration", audio_pb2.Audio(raw=raw(
            samples_f32le=b"\0" * 4 * int(4000 * max_duration_s + 8), sample_rate=4000))),
        *both("unknown embedder", audio_pb2.Audio(wav=wav), embedder="nope"),
        # libsndfile gives up after many chunks; its error quoted the file object (a heap address).
        *both("20000 chunks before fmt", audio_pb2.Audio(wav=_chunks_before_fmt(wav, 20000))),
        Case("audio EmbedScene undecodable protobuf", AUDIO + "EmbedScene", GARBAGE),
    ]
    for hop in (-5.0, float("nan"), float("inf"), 1e-9):  # (0 means the default hop)
        cases.append(Case(f"audio EmbedTimestamps hop_ms={hop}", AUDIO + "EmbedTimestamps",
                          _ser(audio_pb2.EmbedTimestampsRequest(audio=audio_pb2.Audio(wav=wav), hop_ms=hop))))
    req = audio_pb2.StreamTimestampsRequest
    cases += [
        stream("empty stream", []),
        stream("samples before config", [req(samples_f32le=chunk)]),
        stream("config twice", [req(config=config), req(config=config)]),
        stream("config 0 Hz", [req(config=audio_pb2.StreamConfig(sample_rate=0)), req(samples_f32le=chunk)]),
        stream("config NaN hop", [req(config=audio_pb2.StreamConfig(sample_rate=16000, hop_ms=float("nan"))),
                                  req(samples_f32le=chunk)]),
        stream("partial frame", [req(config=config), req(samples_f32le=chunk + b"\0\0")]),
        stream("NaN samples", [req(config=config), req(samples_f32le=nan[:1600].tobytes())]),
        stream("config only, no samples", [req(config=config)]),
        Case("audio StreamTimestamps undecodable message in the stream", AUDIO + "StreamTimestamps",
             [_ser(req(config=config)), GARBAGE]),
        stream("unknown embedder", [req(config=audio_pb2.StreamConfig(sample_rate=16000, embedder="nope")),
                                    req(samples_f32le=chunk)]),
    ]
    return cases
