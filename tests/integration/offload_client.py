"""A client in its own process (none of its work runs on the server's event loop). It sends
probes, a health check then a small ctr Score, at a fixed rate whatever their answers (open loop,
so a stalled server loop delays every probe that arrives meanwhile): first with the server
idle, then while one 10-minute WAV is embedded at a few timestamps (so the server's time goes to
decoding and resampling it) over a connection of its own; ROUNDS times. Prints JSON: per round,
the probes' latencies in seconds and the WAV call's own time.

    python -m tests.integration.offload_client ADDRESS WAV_FILE PROBES_PER_SECOND IDLE_SECONDS ROUNDS
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from infersuite.protos import audio_pb2, audio_pb2_grpc, ctr_pb2, ctr_pb2_grpc

SMALL_SCORE = ctr_pb2.ScoreRequest(history_item_ids=[1, 2, 3], history_category_ids=[1, 1, 2],
                                   candidate_item_ids=[4, 5], candidate_category_ids=[1, 2])
HOP_MS = 60_000.0  # 11 timestamps: the model's share of the call is small, decoding and resampling are not


async def _probe(health, ctr) -> float:
    start = time.monotonic()
    serving = (await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=60)).status
    scored = len((await ctr.Score(SMALL_SCORE, timeout=60)).click_probabilities)
    if serving != health_pb2.HealthCheckResponse.SERVING or scored != 2:
        raise RuntimeError(f"bad probe answer: health {serving}, {scored} scores")
    return time.monotonic() - start


async def _probes_while(health, ctr, rate: float, busy: asyncio.Future | float) -> list[float]:
    """Probes every 1/rate s until `busy` is done (a future) or for `busy` seconds."""
    until = time.monotonic() + busy if isinstance(busy, float) else float("inf")
    probes = []
    while (not busy.done()) if isinstance(busy, asyncio.Future) else time.monotonic() < until:
        probes.append(asyncio.ensure_future(_probe(health, ctr)))
        await asyncio.sleep(1 / rate)
    return list(await asyncio.gather(*probes))


async def _round(health, ctr, audio, wav: bytes, rate: float, idle_s: float) -> dict:
    idle = await _probes_while(health, ctr, rate, idle_s)
    start = time.monotonic()
    call = asyncio.ensure_future(audio.EmbedTimestamps(
        audio_pb2.EmbedTimestampsRequest(audio=audio_pb2.Audio(wav=wav), hop_ms=HOP_MS), timeout=600))
    during = await _probes_while(health, ctr, rate, call)
    reply = await call
    return {"idle": idle, "during": during, "wav_s": time.monotonic() - start, "timestamps": len(reply.embeddings),
            "duration_s": reply.duration_s}


async def main(address: str, wav: bytes, rate: float, idle_s: float, rounds: int) -> list[dict]:
    async with grpc.aio.insecure_channel(address) as channel, grpc.aio.insecure_channel(address, options=[
            ("grpc.max_send_message_length", 32 << 20), ("grpc.use_local_subchannel_pool", 1)]) as wav_channel:
        health, ctr = health_pb2_grpc.HealthStub(channel), ctr_pb2_grpc.CtrServiceStub(channel)
        audio = audio_pb2_grpc.AudioServiceStub(wav_channel)
        await _probe(health, ctr)  # connected and warm
        return [await _round(health, ctr, audio, wav, rate, idle_s) for _ in range(rounds)]


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], Path(sys.argv[2]).read_bytes(), float(sys.argv[3]),
                                      float(sys.argv[4]), int(sys.argv[5])))))
