"""Every RPC of every service against the hostile corpus (tests/reliability/hostile.py), on ONE
suite process hosting all four services: each case gets its status with a message, nothing
becomes INTERNAL, and the process stays healthy."""

from __future__ import annotations

import json
import os

import grpc
import numpy as np
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infersuite.protos import splitcompute_pb2
from infersuite.services.audio import AudioService, AudioSettings
from infersuite.services.ctr import CtrService, CtrSettings
from infersuite.services.segmentation import SegmentationService, SegmentationSettings
from infersuite.services.splitcompute import SplitComputeService
from infersuite.services.splitcompute.settings import SplitComputeSettings
from tests.fixtures import serving
from tests.reliability import hostile
from tests.reliability.load import metric, scrape

pytestmark = [pytest.mark.reliability, pytest.mark.integration]
MAX_CANDIDATES, MAX_DURATION_S, MAX_PAYLOAD = 500, 20.0, 8192


def _merge_repositories(target, *repositories) -> None:
    """One repository of symlinks to every fixture's models (+ their aliases)."""
    target.mkdir()
    aliases = {}
    for repository in repositories:
        for entry in repository.iterdir():
            if entry.name == "aliases.json":
                aliases.update(json.loads(entry.read_text()))
            elif entry.is_dir():
                (target / entry.name).symlink_to(entry)
    (target / "aliases.json").write_text(json.dumps(aliases))


@pytest.fixture(scope="module")
async def suite(tiny_ctr, tiny_segmentation, tiny_splitcompute, tiny_audio, tmp_path_factory):
    repository = tmp_path_factory.mktemp("hostile") / "repo"
    _merge_repositories(repository, tiny_ctr.repository, tiny_segmentation.repository,
                        tiny_splitcompute.repository, tiny_audio.repository)
    services = [CtrService(CtrSettings(max_candidates=MAX_CANDIDATES)), SegmentationService(SegmentationSettings()),
                SplitComputeService(SplitComputeSettings(max_payload_bytes=MAX_PAYLOAD)),
                AudioService(AudioSettings(max_duration_s=MAX_DURATION_S))]
    async with serving(services, repository, ready_timeout_s=120) as served, \
            grpc.aio.insecure_channel(served.address) as channel:
        served.server.port = served.port  # for tests that open their own channel
        yield served.server, channel, tiny_ctr


async def _status(channel: grpc.aio.Channel, case: hostile.Case, port: int) -> tuple[str, str]:
    return await hostile.status(channel, f"127.0.0.1:{port}", case)


def _oip_specs(server) -> list[tuple[str, str, int]]:
    model = server.models.get("din-fp32")
    return [(spec.name, spec.datatype, len(spec.shape)) for spec in model.inputs]


async def _corpus(server, channel) -> list[hostile.Case]:
    ctr = server.models.get("din-fp32").meta["vocabulary"]
    codec = await channel.unary_unary(
        hostile.SPLIT + "GetCodec", response_deserializer=splitcompute_pb2.GetCodecResponse.FromString)(b"")
    return [*hostile.ctr_cases(ctr["n_items"], ctr["n_categories"], MAX_CANDIDATES),
            *hostile.oip_cases("din-fp32", _oip_specs(server)), *hostile.segmentation_cases(),
            *hostile.splitcompute_cases(codec.codec_version, tuple(codec.latent_shape), MAX_PAYLOAD),
            *hostile.audio_cases(MAX_DURATION_S)]


async def test_every_hostile_request_gets_its_status_with_a_message_and_the_process_stays_healthy(suite) -> None:
    server, channel, tiny_ctr = suite
    rss_before = psutil.Process(os.getpid()).memory_info().rss
    corpus = await _corpus(server, channel)
    known_good = hostile.ctr_cases(tiny_ctr.n_items, tiny_ctr.n_categories, MAX_CANDIDATES)[-1]
    answer_before = await channel.unary_unary(known_good.method)(known_good.payload, timeout=30)
    wrong = []
    for case in corpus:
        code, details = await _status(channel, case, server.port)
        if code not in case.codes or (code != "OK" and not details) or hostile.leaks(details):
            wrong.append((case.name, code, details[:160]))
    assert not wrong, "\n".join(map(str, wrong))
    assert await channel.unary_unary(known_good.method)(known_good.payload, timeout=30) == answer_before
    assert len(corpus) >= 100
    health = health_pb2_grpc.HealthStub(channel)
    assert (await health.Check(health_pb2.HealthCheckRequest())).status == health_pb2.HealthCheckResponse.SERVING
    samples = scrape(f"http://127.0.0.1:{server.metrics_port}/metrics")
    assert metric(samples, "infersuite_requests_total", code="INTERNAL") == 0
    growth_mib = (psutil.Process(os.getpid()).memory_info().rss - rss_before) / 2**20
    assert growth_mib < 200, growth_mib  # no case made the server allocate what it declared


async def test_a_message_over_the_size_limit_is_refused_before_it_is_read(suite) -> None:
    server, channel, _ = suite
    limit = server.settings.max_message_bytes
    oversized = hostile.Case("ctr 17 MiB", hostile.CTR + "Score", b"\x1a" + _varint(limit + 1) + b"\0" * (limit + 1))
    code, details = await _status(channel, oversized, server.port)
    assert code == "RESOURCE_EXHAUSTED" and str(limit) in details, details
    small = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}",
                                      options=[("grpc.max_receive_message_length", 64)])
    try:  # a client's own receive limit bounds what a server can make it allocate
        ok_request = hostile.ctr_cases(10, 2, MAX_CANDIDATES)[-1]
        code, details = await _status(small, ok_request, server.port)
        assert code == "RESOURCE_EXHAUSTED", (code, details)
    finally:
        await small.close()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_corpus_cases_are_unique() -> None:
    names = [c.name for c in hostile.ctr_cases(10, 2, 5) + hostile.segmentation_cases() + hostile.audio_cases(5.0)
             + hostile.splitcompute_cases(1, (4, 2, 2), 1024) + hostile.oip_cases("m", [("x", "FP32", 2)])]
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    assert np.all([n.split()[0] in {"ctr", "oip", "segmentation", "splitcompute", "audio"} for n in names])
