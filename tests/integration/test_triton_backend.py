"""backend = triton against a REAL Triton Inference Server (2.51, from the nvidia-pytriton wheel).

Skips only when the tritonserver binary cannot start on this machine, printing why; a Triton that
starts but never serves the model (a config.pbtxt it rejects) fails (tests/local_triton.py).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import grpc
import numpy as np
import pytest

from exporters import triton_local
from infersuite.services.ctr import CtrService, CtrSettings
from infersuite.services.ctr.client import CtrClient, CtrClientError
from infersuite.services.runtime import RuntimeSettings, build_server
from tests.local_triton import TritonNeverReady, skip_if_unavailable, wait_until_ready

pytestmark = pytest.mark.integration
MODEL = "din-fp32"
TRITON_TIMEOUT_S = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalTriton:
    def __init__(self, repository: Path, work: Path):
        self.repository, self.work, self.port = repository, work, _free_port()
        self.log = work / "tritonserver.log"
        self.proc = None

    def start(self) -> None:
        """Skips when tritonserver cannot run here; a Triton that runs but never serves the model fails."""
        try:
            self.proc = triton_local.launch(self.repository, self.port, self.work, [MODEL], self.log,
                                            exit_on_error=False)
            wait_until_ready(self.port, self.proc, self.log, [MODEL])
        except triton_local.TritonUnavailable as exc:
            skip_if_unavailable(exc)

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
                                       triton_url=f"127.0.0.1:{triton.port}", triton_timeout_s=TRITON_TIMEOUT_S)
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
            # Prompt, not a hang, told by the status rather than a stopwatch: the call's deadline (3 s, the
            # backend's own triton_timeout_s) is the most either side may wait, so a call that waited on the
            # dead Triton (a hang, a wait-for-ready, a retry until the backend's timeout) ends DEADLINE_EXCEEDED.
            with pytest.raises(CtrClientError) as err:
                await via_triton.score(*requests[0], timeout_s=TRITON_TIMEOUT_S)
            assert err.value.code == grpc.StatusCode.UNAVAILABLE, err.value

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


def test_a_triton_that_runs_but_never_serves_the_model_fails_instead_of_skipping(tiny_ctr, tmp_path) -> None:
    """A graph (or config) Triton rejects must not turn the Triton tests into skips."""
    repository, work = tmp_path / "repo", tmp_path / "work"
    shutil.copytree(tiny_ctr.repository / MODEL, repository / MODEL)
    (repository / MODEL / "1" / "model.onnx").write_bytes(b"\x08\x07not an ONNX graph")
    work.mkdir()
    port, log = _free_port(), work / "tritonserver.log"
    try:
        proc = triton_local.launch(repository, port, work, [MODEL], log, exit_on_error=False)
    except triton_local.TritonUnavailable as exc:
        skip_if_unavailable(exc)
    with pytest.raises(TritonNeverReady, match=f"{MODEL} never became ready: it failed to load \\({MODEL}: "):
        wait_until_ready(port, proc, log, [MODEL], timeout=60)  # Triton's reason, as soon as it is known
    assert proc.poll() is not None  # killed, not left running


LOAD_CLIENTS = 64
LOAD_S = 30.0
DEADLINE_S = 5.0


async def test_sixty_four_clients_through_the_triton_backend_all_answered(triton, tiny_ctr) -> None:
    """Closed loop, 64 clients on their own connections, for 30 s through ctr Score on backend=triton:
    every request answered, none cut short. The issue saw 51 DEADLINE_EXCEEDED here while Triton alone
    answered the same load: the runtime bounded Triton calls by a stale request's deadline, so requests
    failed early. Failing early is what this test refuses outright. A request that waited its whole
    deadline is allowed at most once in 5,000: CI once saw 5 of 40,816 (full 5 s waits, one execution's
    worth) that ~570,000 requests in local reruns never reproduced; the Triton log is printed then."""
    import time

    remote, port = await _serve(tiny_ctr.repository, backend="triton", triton_url=f"127.0.0.1:{triton.port}",
                                triton_timeout_s=DEADLINE_S)
    codes: dict[str, int] = {}
    latencies: list[float] = []
    failed: list[tuple[str, float]] = []  # (code, seconds from send) of every non-OK answer
    try:
        clients = [CtrClient(f"127.0.0.1:{port}", timeout_s=DEADLINE_S,
                             options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(LOAD_CLIENTS)]
        stop_at = time.monotonic() + LOAD_S

        async def one(client: CtrClient, seed: int) -> None:
            while time.monotonic() < stop_at:
                request, sent = _request(tiny_ctr, seed), time.monotonic()
                seed += LOAD_CLIENTS
                try:
                    await client.score(*request)
                    code = "OK"
                except CtrClientError as err:
                    code = err.code.name
                    failed.append((code, time.monotonic() - sent))
                latencies.append(time.monotonic() - sent)
                codes[code] = codes.get(code, 0) + 1

        await asyncio.gather(*(one(c, i) for i, c in enumerate(clients)))
        for client in clients:
            await client.close()
    finally:
        await remote.stop(0)
    total = sum(codes.values())
    log_tail = triton.log.read_text(errors="replace")[-3000:] if triton.log.is_file() else "(no Triton log)"
    early = [(code, round(waited, 3)) for code, waited in failed
             if code != "DEADLINE_EXCEEDED" or waited < 0.95 * DEADLINE_S]
    assert not early, f"requests failed before their deadline: {early[:10]} of {codes}"
    assert len(failed) * 5000 <= total, \
        f"{len(failed)} of {total} requests waited out their deadline: {codes}\n{log_tail}"
    assert total > LOAD_CLIENTS and max(latencies) < DEADLINE_S + 1.0  # every call ended by its deadline
