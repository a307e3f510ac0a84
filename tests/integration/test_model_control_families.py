"""Explicit model control on every family: unloading any model a family needs turns that family's
health entry (and the server's) NOT_SERVING at once, and loading it back turns them SERVING; the other
families' entries do not move. Segmentation's list of stage graphs comes from its backbone's meta.json,
so it is only known once the service has seen the repository (the case that stayed SERVING before)."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from infersuite.services.audio import AudioService, AudioSettings
from infersuite.services.ctr import CtrService, CtrSettings
from infersuite.services.segmentation import SegmentationService, SegmentationSettings
from infersuite.services.splitcompute import SplitComputeService
from infersuite.services.splitcompute.settings import SplitComputeSettings
from tests.fixtures import serving

pytestmark = pytest.mark.integration
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

FAMILIES = {
    "ctr": ("tiny_ctr", lambda: CtrService(CtrSettings(model="din-fp32"))),
    "segmentation": ("tiny_segmentation", lambda: SegmentationService(SegmentationSettings())),
    "splitcompute": ("tiny_splitcompute", lambda: SplitComputeService(SplitComputeSettings())),
    "audio": ("tiny_audio", lambda: AudioService(AudioSettings())),
}


async def _health(channel: grpc.aio.Channel, service: str) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return reply.status


@pytest.mark.parametrize("family", sorted(FAMILIES))
async def test_unloading_any_required_model_flips_the_familys_health(family: str, request) -> None:
    fixture, make = FAMILIES[family]
    repository = request.getfixturevalue(fixture).repository
    service = make()
    async with serving([service], repository, metrics_port=-1, model_control_mode="explicit",
                       intra_op_threads=1, ready_timeout_s=120) as served:
        required = service.required_models(served.server.models.repository)
        assert required, f"{family} names no models"
        if family == "segmentation":  # the stage graphs come from the backbone's meta.json
            assert any("head" in name for name in required) and len(required) > 2, required
        entry = service.grpc_service_names[0]
        async with grpc.aio.insecure_channel(served.address) as channel:
            oip = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            assert await _health(channel, entry) == SERVING
            for model in required:
                await oip.RepositoryModelUnload(service_pb2.RepositoryModelUnloadRequest(model_name=model), timeout=30)
                assert not (await oip.ModelReady(service_pb2.ModelReadyRequest(name=model))).ready
                assert await _health(channel, entry) == NOT_SERVING, f"{family} still SERVING without {model}"
                assert await _health(channel, "") == NOT_SERVING
                await oip.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name=model), timeout=60)
                assert await _health(channel, entry) == SERVING, f"{family} not SERVING after {model} came back"
                assert await _health(channel, "") == SERVING
