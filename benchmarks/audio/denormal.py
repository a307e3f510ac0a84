"""`python -m benchmarks.audio.denormal`: what 30 s of denormal samples (1e-44) cost against 30 s
of a tone, before and after the finite-by-construction front end (issue: denormals cost ~60x).

- before: the embedder exported with the previous front end (`x + 1e-12` before the log, no
  per-window peak scaling: the optimiser folds the guard away), a plain one-thread session, the
  samples as sent;
- after, graph only: the current export, a one-thread session with the serving runtime's options
  (`session.set_denormal_as_zero`), the samples as sent (no flush): what the graph itself costs;
- after, service path: the same plus the service's numpy front end (denormals flushed to zero).

Each figure is the CPU time of this process for the 30 scene windows (one batch), best of 3, so it
is one core's work whatever else the shared machine runs. Also says whether the output was finite.
`benchmarks.audio.report` puts the table into reports/audio.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from exporters.onnx_export import export_onnx
from infersuite.services.audio import windows
from infersuite.services.audio.samples import flush_denormals
from models.audio.frontend import LogMel
from models.audio.train import load_checkpoint

SECONDS = 30
RATE = 32000


class AdditiveGuardLogMel(LogMel):
    """The front end before the fix: `+ 1e-12` before the log, which the exporter folds away."""

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        c = self.config
        spectrum = self.frames(waveform) @ self.basis  # (B, T, 2K)
        real, imag = spectrum.chunk(2, dim=-1)
        mel_db = 10.0 * torch.log10((real * real + imag * imag) @ self.mel + 1e-12)  # (B, T, M)
        peak = mel_db.amax(dim=(1, 2), keepdim=True)
        return ((torch.maximum(mel_db, peak + c.floor_db) - peak) / c.scale_db).transpose(1, 2).unsqueeze(1)


def cpu_model() -> str:
    """The CPU's model name (denormal penalties differ between CPU families)."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else [])
             if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def signals() -> dict[str, np.ndarray]:
    t = np.arange(SECONDS * RATE) / RATE
    return {"denormal 1e-44": np.full(t.size, 1e-44, np.float32),
            "tone 440 Hz": (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)}


def session(path: Path, serving_options: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if serving_options:
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def cpu_seconds(run: ort.InferenceSession, samples: np.ndarray, flush: bool, repeats: int = 3) -> tuple[float, bool]:
    """(best CPU seconds, output finite) of the scene windows of `samples` in one batch."""
    best, finite = float("inf"), True
    for _ in range(repeats + 1):  # the first run warms up
        start = time.process_time()
        audio = flush_denormals(samples.copy()) if flush else samples
        out = run.run(["embedding"], {"waveform": windows.scene_windows(audio, RATE)})[0]
        best, finite = min(best, time.process_time() - start), bool(np.isfinite(out).all())
    return best, finite


def measure(checkpoint: Path) -> dict[str, dict[str, tuple[float, bool]]]:
    model, _ = load_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        after = export_onnx(model, Path(tmp) / "after.onnx")
        model.front_end = AdditiveGuardLogMel(model.front_config)
        before = export_onnx(model, Path(tmp) / "before.onnx")
        paths = {"before": (before, False, False), "after, graph only": (after, True, False),
                 "after, service path": (after, True, True)}
        return {label: {name: cpu_seconds(session(path, options), samples, flush)
                        for name, samples in signals().items()}
                for label, (path, options, flush) in paths.items()}


def table(results: dict[str, dict[str, dict[str, tuple[float, bool]]]]) -> list[str]:
    names = list(signals())
    lines = ["| embedder | front end | " + " | ".join(f"{n}: CPU s (finite?)" for n in names) + " | denormal / tone |",
             "|---|---|" + "---|" * (len(names) + 1)]
    for embedder, rows in results.items():
        for label, cells in rows.items():
            (den, den_ok), (tone, tone_ok) = cells[names[0]], cells[names[1]]
            lines.append(f"| {embedder} | {label} | {den:.3f} ({'yes' if den_ok else 'NaN'}) | "
                         f"{tone:.3f} ({'yes' if tone_ok else 'NaN'}) | {den / tone:.1f}x |")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.audio.denormal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {name: measure(args.artifacts / "audio" / f"{name}.pt") for name in ("passt", "bow")}
    print(f"CPU: {cpu_model()}")
    print("\n".join(table(results)))
    return results


if __name__ == "__main__":
    main()
