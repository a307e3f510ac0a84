"""The family lifecycle on a real server: start-up goes through the same model-set transaction as a
reload (a family whose `derive` refuses its set stays NOT_SERVING with the reason logged, its models are
not served, the other families serve), health follows repository polling, `finalize` gets the state of
each retired set and of the serving one at stop, and an open health Watch does not hold stop past its
grace period. Two test families over onnxruntime's bundled sigmoid.onnx (no training needed)."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import grpc
import numpy as np
import onnxruntime
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from infersuite.services.runtime import Runtime, RuntimeSettings, build_server
from infersuite.services.runtime.model_manager import ModelSet
from infersuite.services.runtime.reload import SetNotServed
from tests.fixtures import EchoService, serving

pytestmark = pytest.mark.integration
SAMPLES = Path(onnxruntime.__file__).parent / "datasets"  # onnxruntime's bundled sample models
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Family:
    """A family of one model; `derive` refuses the versions in `refused`; `finalize` records each state."""

    def __init__(self, name: str, refused: tuple[str, ...] = ()):
        self.name, self.model, self.refused = name, f"{name}-model", refused
        self.grpc_service_names = (f"infersuite.test.{name.capitalize()}",)
        self.derived: list[tuple[str, str]] = []
        self.finalized: list[tuple[str, str]] = []

    def required_models(self, repository: object) -> list[str]:
        return [self.model]

    def _derive(self, models: ModelSet) -> tuple[str, str]:
        version = models.versions()[self.model]
        if version in self.refused:
            raise ValueError(f"the {self.name} tables of version {version} are broken")
        self.derived.append((self.name, version))
        return self.name, version

    def register(self, server: object, runtime: Runtime) -> None:
        runtime.service_models(self.name, self._derive, self.finalized.append)


def _add_version(root: Path, model: str, version: int) -> None:
    (root / model / str(version)).mkdir(parents=True)
    shutil.copy(SAMPLES / "sigmoid.onnx", root / model / str(version) / "model.onnx")


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    for model in ("alpha-model", "beta-model"):
        _add_version(tmp_path, model, 1)
    return tmp_path


async def _health(channel: grpc.aio.Channel, service: str) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return reply.status


async def _infer(channel: grpc.aio.Channel, model: str) -> service_pb2.ModelInferResponse:
    x = np.zeros((3, 4, 5), np.float32)
    request = service_pb2.ModelInferRequest(model_name=model, raw_input_contents=[x.tobytes()])
    request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
    return await service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)


async def test_a_family_refused_at_start_up_is_not_serving_and_its_models_do_not_answer(repository, caplog) -> None:
    alpha, beta = Family("alpha"), Family("beta", refused=("1",))
    caplog.set_level(logging.INFO, logger="infersuite.services.runtime")
    async with serving([alpha, beta], repository, metrics_port=-1, wait_ready=False) as served, \
            grpc.aio.insecure_channel(served.address) as channel:
        with pytest.raises(SetNotServed, match=r"the beta model set is not served: beta-model: .*refused the new "
                                               r"model set: the beta tables of version 1 are broken"):
            await served.server.wait_ready(timeout=60)
        assert await _health(channel, alpha.grpc_service_names[0]) == SERVING
        assert await _health(channel, beta.grpc_service_names[0]) == NOT_SERVING
        assert await _health(channel, "") == NOT_SERVING
        oip = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert (await oip.ModelReady(service_pb2.ModelReadyRequest(name="alpha-model"))).ready
        # Model control none serves every model of the repository, but a family's model only with its set.
        assert not (await oip.ModelReady(service_pb2.ModelReadyRequest(name="beta-model"))).ready
        assert (await _infer(channel, "alpha-model")).outputs[0].name == "y"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _infer(channel, "beta-model")
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # Asked for by its family, so "not loaded yet", not the explicit-control hint of an unasked model.
        assert "not loaded yet" in err.value.details() and "explicit" not in err.value.details(), err.value.details()
        index = {m.name: m for m in (await oip.RepositoryIndex(service_pb2.RepositoryIndexRequest())).models}
        refused = index["beta-model"]
        assert refused.state == "UNAVAILABLE" and "tables of version 1 are broken" in refused.reason
    assert alpha.derived == [("alpha", "1")] and beta.derived == []
    logged = [r.getMessage() for r in caplog.records if r.name == "infersuite.services.runtime.server"]
    assert any(m.startswith("service beta is NOT_SERVING: model beta-model is not loaded") and "broken" in m
               for m in logged), logged


async def test_health_follows_a_poll_that_serves_the_refused_family_and_finalize_sees_every_set(repository) -> None:
    alpha, beta = Family("alpha"), Family("beta", refused=("1",))
    async with serving([alpha, beta], repository, metrics_port=-1, wait_ready=False) as served, \
            grpc.aio.insecure_channel(served.address) as channel:
        with pytest.raises(SetNotServed):
            await served.server.wait_ready(timeout=60)
        assert await _health(channel, beta.grpc_service_names[0]) == NOT_SERVING
        assert await served.server.reloader.poll_once() == []  # the same refused files are not retried
        _add_version(repository, "beta-model", 2)
        _add_version(repository, "alpha-model", 2)
        outcomes = await served.server.reloader.poll_once()
        assert sorted((o.model, o.version, o.state) for o in outcomes) == [
            ("alpha-model", "2", "swapped"), ("beta-model", "2", "swapped")]
        for entry in ("", *alpha.grpc_service_names, *beta.grpc_service_names):
            assert await _health(channel, entry) == SERVING, entry
        assert (await _infer(channel, "beta-model")).outputs[0].name == "y"
        assert alpha.finalized == [("alpha", "1")]  # the swapped-out set, once retired
        assert beta.finalized == []  # its refused set never had a state
    # At stop, the serving sets are finalized too.
    assert alpha.finalized == [("alpha", "1"), ("alpha", "2")] and beta.finalized == [("beta", "2")]


@pytest.mark.parametrize("transport", ["aio", "sync"])
async def test_an_open_health_watch_does_not_hold_stop_past_its_grace_period(transport: str) -> None:
    grace_s = 0.5
    server, port = await build_server(RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1",
                                                      transport=transport), [EchoService()])
    await server.start()
    await server.wait_ready()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
        assert (await watch.read()).status == SERVING
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.wait_for(server.stop(grace_s), grace_s + 10)  # bounded, so a hang fails instead of waiting
        took = loop.time() - began
        # A Watch that held the stop would hold it for its own 60 s deadline; the margin is for a loaded machine.
        assert took < grace_s + 5.0, f"stop took {took:.2f} s with an open Watch (grace {grace_s} s)"
        statuses, code = await asyncio.wait_for(_read_to_the_end(watch), 5)  # the stream ended with the server
        assert statuses in ([], [NOT_SERVING]) and code != grpc.StatusCode.DEADLINE_EXCEEDED, (statuses, code)


async def _read_to_the_end(watch) -> tuple[list[int], grpc.StatusCode]:
    statuses = []
    try:
        while (reply := await watch.read()) is not grpc.aio.EOF:
            statuses.append(reply.status)
    except grpc.aio.AioRpcError as exc:
        return statuses, exc.code()
    return statuses, grpc.StatusCode.OK
