"""backend = triton against a REAL Triton Inference Server (2.51, from the nvidia-pytriton wheel).

Skips only when the tritonserver binary cannot start on this machine, printing why.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from exporters import triton_local
from services.ctr import CtrService, CtrSettings
from services.ctr.client import CtrClient, CtrClientError
from services.runtime import RuntimeSettings, build_server

pytestmark = pytest.mark.integration
MODEL = "din-fp32"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port: int, proc, log: Path, timeout: float = 90) -> None:
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if client.is_model_ready(MODEL):
                return
        except Exception:  # not listening yet
            pass
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    triton_local.kill(proc)
    pytest.skip(f"tritonserver could not start here (exit {proc.poll()}):\n{tail}")


class LocalTriton:
    def __init__(self, repository: Path, work: Path):
        self.repository, self.work, self.port = repository, work, _free_port()
        self.log = work / "tritonserver.log"
        self.proc = None

    def start(self) -> None:
        try:
            self.proc = triton_local.launch(self.repository, self.port, self.work, [MODEL], self.log)
        except triton_local.TritonUnavailable as exc:
            pytest.skip(f"tritonserver is not installed: {exc}")
        _wait_ready(self.port, self.proc, self.log)

    def kill(self) -> None:
        if self.proc is not None:
            triton_local.kill(self.proc)


@pytest.fixture(scope="module")
def triton(tiny_ctr, tmp_path_factory):
    server = LocalTriton(tiny_ctr.repository, tmp_path_factory.mktemp("triton"))
    server.start()
    yield server
    server.kill()


async def _serve(repository: Path, **settings):
    runtime = RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1", model_repository=repository,
                              load_retry_s=0.2, **settings)
    server, port = await build_server(runtime, [CtrService(CtrSettings())])
    await server.start()
    await server.wait_ready(timeout=60)
    return server, port


def _request(tiny_ctr, seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    return (rng.integers(1, tiny_ctr.n_items + 1, n), rng.integers(1, tiny_ctr.n_categories + 1, n),
            rng.integers(1, tiny_ctr.n_items + 1, 12), rng.integers(1, tiny_ctr.n_categories + 1, 12))


async def test_triton_backend_gives_the_embedded_results_and_survives_a_triton_restart(triton, tiny_ctr) -> None:
    embedded, embedded_port = await _serve(tiny_ctr.repository)
    remote, remote_port = await _serve(tiny_ctr.repository, backend="triton",
                                       triton_url=f"127.0.0.1:{triton.port}", triton_timeout_s=3.0)
    try:
        async with CtrClient(f"127.0.0.1:{embedded_port}") as local, \
                CtrClient(f"127.0.0.1:{remote_port}", timeout_s=5.0) as via_triton:
            requests = [_request(tiny_ctr, seed) for seed in range(8)]
            want = [await local.score(*r, explain=True) for r in requests]
            got = await asyncio.gather(*(via_triton.score(*r, explain=True) for r in requests))  # batched
            for w, g in zip(want, got, strict=True):
                np.testing.assert_allclose(g.click_probabilities, w.click_probabilities, atol=1e-6)
                np.testing.assert_allclose(g.activation_weights, w.activation_weights, atol=1e-6)

            triton.kill()
            start = time.monotonic()
            with pytest.raises(CtrClientError) as err:
                await via_triton.score(*requests[0])
            assert err.value.code == grpc.StatusCode.UNAVAILABLE, err.value
            assert time.monotonic() - start < 4.0  # prompt, not a hang

            triton.start()  # same port: the channel reconnects
            recovered = None
            for _ in range(40):
                try:
                    recovered = await via_triton.score(*requests[0])
                    break
                except CtrClientError:
                    await asyncio.sleep(0.25)
            assert recovered is not None, "no recovery after Triton came back"
            np.testing.assert_allclose(recovered.click_probabilities, want[0].click_probabilities, atol=1e-6)
    finally:
        await remote.stop(0)
        await embedded.stop(0)
