"""Exports an Entropic Student into the model repository as two graphs plus its codec.

- `splitcompute-encoder-fp32`: the edge graph (image -> float latent), the device bundle;
- `splitcompute-server-fp32`: decoder + tail (dequantized latent -> class probabilities),
  batched on dim 0 so the runtime's dynamic batcher can batch the tail across devices.

Both meta.json files carry the same "codec": the version, the latent shape and the CDF tables
(per-channel probability mass of every integer symbol in [-R, R], from the learned prior). The
version is a hash of the encoder weights and the tables, so a retrained encoder can never be
decoded with another encoder's tables: the server refuses unknown versions.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from exporters.onnx_export import OPSET, check_parity, export_onnx
from exporters.repository import ServingConfig, sha256_file, write_model
from models.splitcompute.data import CLASS_NAMES, ShapeDataConfig, to_float
from models.splitcompute.student import EdgeEncoder, EntropicStudent, ServerHead
from models.splitcompute.train import load_student, quantized_latents
from models.splitcompute.user_data import data_config_from_dict, load_data

ENCODER_ATOL = 1e-4  # float latents before rounding
SERVER_ATOL = 1e-5  # probabilities


def codec_version(student: EntropicStudent, pmf: np.ndarray) -> int:
    """u32 from sha256 over the encoder's weights and the CDF tables (nonzero)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(student.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().numpy().astype("<f4").tobytes())
    digest.update(np.ascontiguousarray(pmf, "<f8").tobytes())
    return int.from_bytes(digest.digest()[:4], "little") or 1


def codec_meta(student: EntropicStudent) -> dict[str, Any]:
    pmf, radius = student.prior.pmf_table()
    return {"version": codec_version(student, pmf), "latent_shape": list(student.config.latent_shape),
            "radius": radius, "pmf": pmf.tolist()}


def _parity_images(student: EntropicStudent, seed: int = 0) -> list[tuple[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    size = student.config.image_size
    return [(torch.rand(b, 3, size, size, generator=generator),) for b in (1, 2, 5)]


def _parity_latents(student: EntropicStudent, radius: int, seed: int = 0) -> list[tuple[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    shape = student.config.latent_shape
    return [(torch.randint(-radius, radius + 1, (b, *shape), generator=generator).float(),) for b in (1, 3, 8)]


def export_splitcompute(checkpoint: Path, repository: Path, prefix: str = "splitcompute",
                        recipe: str = "fp32") -> dict[str, Path]:
    """Exports both graphs (parity-checked) -> {"encoder": version dir, "server": version dir}."""
    student, ckpt = load_student(checkpoint)
    codec = codec_meta(student)
    common = {"family": "splitcompute", "architecture": "entropic-student", "recipe": recipe,
              "source_checkpoint": checkpoint.name, "source_checkpoint_sha256": sha256_file(checkpoint),
              "quality": ckpt.get("metrics", {}), "codec": codec,
              "class_names": list(ckpt.get("class_names", CLASS_NAMES)),
              "image_size": student.config.image_size, "onnx_opset": OPSET, "torch_version": torch.__version__}
    written = {}
    with tempfile.TemporaryDirectory() as tmp:
        edge = EdgeEncoder(student)
        path = export_onnx(edge, Path(tmp) / "encoder.onnx")
        parity = check_parity(edge, path, _parity_images(student), atol=ENCODER_ATOL)
        written["encoder"] = write_model(repository, f"{prefix}-encoder-{recipe}", path,
                                         {**common, "graph": "edge encoder", "parity_max_abs_diff": parity},
                                         ServingConfig(max_batch_size=64))
        head = ServerHead(student)
        path = export_onnx(head, Path(tmp) / "server.onnx")
        parity = check_parity(head, path, _parity_latents(student, codec["radius"]), atol=SERVER_ATOL)
        written["server"] = write_model(repository, f"{prefix}-server-{recipe}", path,
                                        {**common, "graph": "decoder + tail", "parity_max_abs_diff": parity},
                                        ServingConfig(max_batch_size=64))
    return written


def build(artifacts: Path, repository: Path, quick: bool) -> Path:
    """exporters.build entry: trains the teacher + beta sweep when no summary exists, exports the default."""
    out = artifacts / "splitcompute"
    summary = out / "summary.json"
    if not summary.is_file():
        from models.splitcompute import train  # torch training only when needed

        train.main(["--out", str(out), *(["--quick"] if quick else [])])
    default = json.loads(summary.read_text())["default"]
    return export_splitcompute(out / default, repository)["server"]


def calibration_batches(checkpoint: Path, count: int, batch_size: int,
                        data_cfg: ShapeDataConfig | None = None) -> Iterator[dict[str, dict[str, np.ndarray]]]:
    """Fixed-shape calibration inputs for both graphs from the training images:
    {"encoder": {"image": (B, 3, H, W)}, "server": {"latent": (B, C, h, w)}} per batch."""
    student, ckpt = load_student(checkpoint)
    data = load_data(data_cfg or data_config_from_dict(ckpt["data_config"]))
    images = data.split("train")[0][:count * batch_size]
    _, radius = student.prior.pmf_table()
    latents = quantized_latents(student, images, radius).numpy()
    for start in range(0, (len(images) // batch_size) * batch_size, batch_size):
        yield {"encoder": {"image": to_float(images[start:start + batch_size])},
               "server": {"latent": latents[start:start + batch_size]}}


def server_accuracy(server_onnx: Path, checkpoint: Path, data_cfg: ShapeDataConfig | None = None) -> float:
    """Quality of a (possibly quantized) server graph: test accuracy on the codec's symbols."""
    student, ckpt = load_student(checkpoint)
    data = load_data(data_cfg or data_config_from_dict(ckpt["data_config"]))
    images, labels = data.split("test")
    _, radius = student.prior.pmf_table()
    latents = quantized_latents(student, images, radius).numpy()
    session = ort.InferenceSession(str(server_onnx), providers=["CPUExecutionProvider"])
    probabilities = np.concatenate([session.run(["probabilities"], {"latent": latents[i:i + 256]})[0]
                                    for i in range(0, len(latents), 256)])
    return float((probabilities.argmax(axis=1) == labels).mean())


def seed_configs() -> list[Any]:
    """The default data and training configs, whose seeds the shipped manifests record."""
    from models.splitcompute.train import TrainConfig

    return [ShapeDataConfig(), TrainConfig()]
