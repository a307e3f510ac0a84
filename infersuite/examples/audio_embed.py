"""Scene and timestamp embeddings of one second of a 440 Hz tone (README: "Audio in a few lines").

    python -m infersuite.examples.audio_embed          # INFERSUITE_TARGET=host:port, default localhost:50051
"""

import asyncio
import io
import os
import wave

import numpy as np

from infersuite.clients import AudioClient, raw_audio, security_from_env, wav_audio


def tone_wav(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


async def main() -> None:
    target = os.environ.get("INFERSUITE_TARGET", "localhost:50051")
    samples = np.random.default_rng(0).normal(0, 0.1, 44_100).astype(np.float32)  # 1 s of noise at 44.1 kHz
    async with AudioClient(target, security=security_from_env()) as audio:
        scene = await audio.embed_scene(wav_audio(tone_wav()), embedder="passt")  # or "bow"
        ts = await audio.embed_timestamps(raw_audio(samples, 44_100), hop_ms=50)
    print("scene embedding:", scene.embedding.shape, "from", scene.model)
    print("timestamp embeddings:", ts.embeddings.shape, "first at", ts.timestamps_ms[0], "ms")


if __name__ == "__main__":
    asyncio.run(main())
