"""The event loop only routes: while a 10-minute WAV is decoded and resampled (on the runtime's
executor), health checks and a small ctr request on the same server stay about as fast as when
it is idle. The client runs in its own process and probes at a fixed rate (open loop: a loop
stalled by decoding would delay every probe that arrives meanwhile); the comparison is with an
idle baseline measured just before, never with a fixed time. Medians, not maxima, and the best of
three rounds: on shared cores a probe, or a whole round, can lose the CPU for a while whatever the
server does, but a loop that decodes stalls every round (measured before the executor: a median
probe of 888 ms against 2.9 ms idle)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from infersuite.loadtest.generators.audio import wav_bytes
from infersuite.services.audio import AudioService, AudioSettings
from infersuite.services.ctr import CtrService, CtrSettings
from tests.fixtures import serving

pytestmark = pytest.mark.integration
RATE = 11025  # 10 minutes of 16-bit mono fit a 16 MiB message; 11025 -> 32000 Hz is a costly resampling ratio
PROBES_PER_SECOND = 50  # >= 10 probes must fall inside the decode, which takes ~0.7 s on an idle machine
ROUNDS = 3
SLOWDOWN_ALLOWED = 5.0  # generous: the decoding thread shares the cores (and the GIL) with the probes
ROOT = Path(__file__).resolve().parents[2]


def _write_ten_minute_wav(path: Path) -> Path:
    t = np.arange(600 * RATE) / RATE
    path.write_bytes(wav_bytes((0.3 * np.sin(2 * np.pi * 440.0 * t))[:, None], RATE))  # 16-bit mono
    return path


def _suite_repository(root: Path, *sources: Path) -> Path:
    """One repository holding the models of several fixtures (links, nothing copied)."""
    for source in sources:
        for entry in source.iterdir():
            target = root / entry.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(entry, target_is_directory=entry.is_dir())
    return root


async def _jobs_seen(executor, client: asyncio.subprocess.Process) -> int:
    """How many 2 ms samples found the executor running a job while the client ran."""
    seen = 0
    while client.returncode is None:
        seen += executor.running > 0
        await asyncio.sleep(0.002)
    return seen


async def test_health_and_small_requests_stay_fast_while_a_long_wav_is_decoded(tiny_ctr, tiny_audio,
                                                                               tmp_path) -> None:
    wav = _write_ten_minute_wav(tmp_path / "ten_minutes.wav")
    repository = _suite_repository(tmp_path / "repo", tiny_ctr.repository, tiny_audio.repository)
    services = [CtrService(CtrSettings()), AudioService(AudioSettings(default_embedder="bow"))]
    async with serving(services, repository, intra_op_threads=1, executor_threads=1) as served:
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.integration.offload_client", served.address, str(wav),
            str(PROBES_PER_SECOND), "1.5", str(ROUNDS), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        seen, (out, err) = await asyncio.gather(_jobs_seen(served.server.runtime.executor, client),
                                                client.communicate())
    assert client.returncode == 0, err.decode()[-2000:]
    rounds = json.loads(out)

    assert all(r["duration_s"] == pytest.approx(600.0) and r["timestamps"] == 11 for r in rounds)
    assert seen > 0, "the executor never ran a job: the WAV was not decoded there"
    assert all(len(r["during"]) >= 10 for r in rounds), rounds  # the probes really overlapped the decoding
    slowdowns = [float(np.median(r["during"]) / np.median(r["idle"])) for r in rounds]
    assert min(slowdowns) < SLOWDOWN_ALLOWED, [
        f"median probe {np.median(r['during']) * 1000:.1f} ms while the WAV was decoded, "
        f"{np.median(r['idle']) * 1000:.1f} ms idle ({len(r['during'])} probes over {r['wav_s']:.2f} s)"
        for r in rounds]
