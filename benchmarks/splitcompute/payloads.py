"""`python -m benchmarks.splitcompute.payloads --out DIR`: wire frames for load tests.

Encodes held-out images of the family's procedural data with the real edge SDK (the encoder
bundle in the model repository) and writes one frame per file, DIR/000000.bin ..., the input of
`python -m infersuite.loadtest ... --param splitcompute.payloads=DIR`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from infersuite.services.splitcompute.edge import EdgeEncoder
from models.splitcompute.data import ShapeDataConfig, make_shape_data


def write_payloads(bundle: Path, out: Path, count: int, seed: int = 1234) -> list[Path]:
    """`count` frames of fresh images (their own seed, never the training data)."""
    data = make_shape_data(ShapeDataConfig(n_train=0, n_valid=0, n_test=count, seed=seed))
    encoder = EdgeEncoder(bundle)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(data.split("test")[0]):
        path = out / f"{i:06d}.bin"
        path.write_bytes(encoder.encode(image).payload)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.splitcompute.payloads",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=Path("model_repository/splitcompute-encoder-fp32/1"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=200)
    args = parser.parse_args(argv)
    paths = write_payloads(args.bundle, args.out, args.count)
    sizes = np.array([p.stat().st_size for p in paths])
    print(f"wrote {len(paths)} payloads to {args.out} (mean {sizes.mean():.1f} bytes, max {sizes.max()})")


if __name__ == "__main__":
    main()
