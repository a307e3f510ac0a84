"""Every peer answers ragged DIN ModelInfer requests exactly as onnxruntime does on the same ONNX file.

    python -m benchmarks.peers.check [--onnx model_repository/din-fp32/1/model.onnx] [--cores 1] [--peers kserve]

Starts each peer (launch.start_peer), sends the same requests with tritonclient.grpc (tensors in
raw_input_contents, as tritonclient always sends them) and once more with typed `contents` fields, and compares every
output with a direct onnxruntime run of the file: same names, dtypes and shapes, values within 1e-5, NaN a mismatch.
Prints a pass/fail table and what each peer runs (processes, threads); exits 1 on any mismatch or failed start.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException, np_to_triton_dtype, triton_to_np_dtype

from benchmarks.peers.launch import MODEL_NAME, PEER_KINDS, PeerError, PeerKind, PeerProcess, start_peer
from benchmarks.peers.proc import command_line, thread_names

# DIN's rows layout (models/ctr/din_rows.py): histories (U, T) stacked per user, one row per candidate with its
# user's index. Each request: (history slots, candidates of each user). One user as the ctr service sends it, at
# sizes 1 and the ranking mix's extremes; an empty history (0: one padding slot, mask 0); several users whose
# histories differ in length (masked) and whose candidate counts differ.
REQUEST_SHAPES = ((1, (1,)), (50, (100,)), (100, (500,)), (0, (4,)), (13, (20, 1, 7)), (7, (1, 1)),
                  (33, (5, 17, 2, 9)))
ATOL = 1e-5


@dataclass(frozen=True)
class Row:
    peer: str
    request: str
    encoding: str  # "raw" (raw_input_contents) or "typed" (InferTensorContents)
    output: str
    max_abs_diff: float
    ok: bool
    note: str = ""


def din_requests(meta: dict, seed: int = 0) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """(label, inputs) for each REQUEST_SHAPES entry; ids from the model's vocabulary (meta.json), 0 only as padding."""
    if meta.get("layout") != "rows":
        raise ValueError(f"the check sends DIN rows-layout requests; meta.json says layout {meta.get('layout')!r}")
    n_items, n_categories = meta["vocabulary"]["n_items"], meta["vocabulary"]["n_categories"]
    rng = np.random.default_rng(seed)
    for history, counts in REQUEST_SHAPES:
        users, slots = len(counts), max(history, 1)
        lengths = rng.integers(1, slots + 1, users) if history else np.zeros(users, np.int64)
        lengths[0] = history  # one user's history fills the tensor (or is empty)
        mask = (np.arange(slots)[None, :] < lengths[:, None]).astype(np.float32)  # (U, T)
        rows = sum(counts)
        yield f"U={users} T={history} N={'+'.join(map(str, counts))}", {
            "history_items": rng.integers(1, n_items + 1, (users, slots)) * mask.astype(np.int64),
            "history_categories": rng.integers(1, n_categories + 1, (users, slots)) * mask.astype(np.int64),
            "history_mask": mask,
            "candidate_items": rng.integers(1, n_items + 1, rows),  # (R,)
            "candidate_categories": rng.integers(1, n_categories + 1, rows),  # (R,)
            "candidate_user": np.repeat(np.arange(users, dtype=np.int64), counts),  # (R,)
        }


def compare(got: np.ndarray | None, expected: np.ndarray) -> tuple[float, bool, str]:
    """(max |got - expected|, ok, why not); NaN or inf anywhere is a mismatch."""
    if got is None:
        return float("nan"), False, "missing"
    if got.dtype != expected.dtype or got.shape != expected.shape:
        return float("nan"), False, f"{got.dtype}{list(got.shape)} != {expected.dtype}{list(expected.shape)}"
    if not (np.isfinite(got).all() and np.isfinite(expected).all()):
        return float("nan"), False, "not finite"
    diff = float(np.max(np.abs(got.astype(np.float64) - expected), initial=0.0))
    return diff, diff <= ATOL, "" if diff <= ATOL else f"differs by {diff:.3g}"


def _raw_infer(client: triton.InferenceServerClient, inputs: dict[str, np.ndarray],
               outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    tensors = []
    for name, value in inputs.items():
        tensor = triton.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    requested = [triton.InferRequestedOutput(name) for name in outputs] if outputs else None
    result = client.infer(MODEL_NAME, tensors, outputs=requested, client_timeout=30.0)
    return {out.name: result.as_numpy(out.name) for out in result.get_response().outputs}


_TYPED_FIELD = {"INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
                "INT32": "int_contents", "BOOL": "bool_contents"}


def _typed_infer(stub: service_pb2_grpc.GRPCInferenceServiceStub,
                 inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    request = service_pb2.ModelInferRequest(model_name=MODEL_NAME)
    for name, value in inputs.items():
        tensor = request.inputs.add(name=name, datatype=np_to_triton_dtype(value.dtype), shape=value.shape)
        getattr(tensor.contents, _TYPED_FIELD[tensor.datatype]).extend(value.ravel().tolist())
    response = stub.ModelInfer(request, timeout=30.0)
    decoded = {}
    for index, out in enumerate(response.outputs):
        dtype = triton_to_np_dtype(out.datatype)
        if response.raw_output_contents:  # a peer may answer typed requests with raw outputs
            flat = np.frombuffer(response.raw_output_contents[index], dtype)
        else:
            flat = np.asarray(getattr(out.contents, _TYPED_FIELD[out.datatype]), dtype)
        decoded[out.name] = flat.reshape(tuple(out.shape))
    return decoded


def check_peer(kind: PeerKind, onnx_path: Path, cores: set[int], intra_op_threads: int = 1) -> list[Row]:
    """Starts `kind` on `cores`, checks it (check_running), describes its processes and threads, stops it."""
    started = time.monotonic()
    with start_peer(kind, onnx_path, cores, intra_op_threads) as peer:
        print(f"{kind}: ready in {time.monotonic() - started:.1f} s on {peer.grpc_address}")
        rows = check_running(peer, onnx_path)
        _describe(peer)
    return rows


def check_running(peer: PeerProcess, onnx_path: Path) -> list[Row]:
    """Every request both ways plus one that asks for a single output, each compared with onnxruntime."""
    meta = json.loads((onnx_path.parent / "meta.json").read_text())
    reference = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    output_names = [o.name for o in reference.get_outputs()]
    rows: list[Row] = []
    with triton.InferenceServerClient(peer.grpc_address) as client, grpc.insecure_channel(peer.grpc_address) as ch:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(ch)
        for label, inputs in din_requests(meta):
            expected = dict(zip(output_names, reference.run(None, inputs), strict=True))
            rows += _rows(peer.kind, label, "raw", _call(_raw_infer, client, inputs), expected)
            rows += _rows(peer.kind, label, "typed", _call(_typed_infer, stub, inputs), expected)
        rows += _only_requested(peer.kind, client, reference, meta, output_names[0])
    return rows


def _call(infer: Callable[..., dict[str, np.ndarray]], *args: Any) -> dict[str, np.ndarray] | str:
    try:
        return infer(*args)
    except InferenceServerException as exc:
        return f"error: {exc.status()} {exc.message()}"
    except Exception as exc:  # a grpc.RpcError from the typed call, or anything the peer's answer broke
        return f"error: {type(exc).__name__}: {exc}"


def _rows(kind: str, label: str, encoding: str, got: dict[str, np.ndarray] | str,
          expected: dict[str, np.ndarray]) -> list[Row]:
    if isinstance(got, str):
        return [Row(kind, label, encoding, "*", float("nan"), False, got[:120])]
    rows = [Row(kind, label, encoding, name, *compare(got.get(name), value)) for name, value in expected.items()]
    extra = sorted(set(got) - set(expected))
    if extra:
        rows.append(Row(kind, label, encoding, ",".join(extra), float("nan"), False, "outputs the graph lacks"))
    return rows


def _only_requested(kind: str, client: triton.InferenceServerClient, reference: ort.InferenceSession,
                    meta: dict, output: str) -> list[Row]:
    label, inputs = next(din_requests(meta, seed=1))
    expected = {output: reference.run([output], inputs)[0]}
    return _rows(kind, f"{label} only {output}", "raw", _call(_raw_infer, client, inputs, [output]), expected)


def _describe(peer: PeerProcess) -> None:
    for pid in peer.pids():
        threads = ", ".join(f"{name} x{count}" for name, count in sorted(thread_names(pid).items()))
        print(f"  pid {pid}: {command_line(pid)[:100]}\n    threads: {threads}")
    print(f"  CPU used so far: {peer.cpu_seconds():.2f} s")


def print_table(rows: list[Row]) -> None:
    print(f"{'peer':9} {'request':28} {'encoding':8} {'output':20} {'max|diff|':>10}  result")
    for row in rows:
        verdict = "pass" if row.ok else f"FAIL {row.note}"
        print(f"{row.peer:9} {row.request:28} {row.encoding:8} {row.output:20} {row.max_abs_diff:10.2e}  {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.peers.check",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, default=Path("model_repository/din-fp32/1/model.onnx"),
                        help="the DIN ONNX file (meta.json beside it gives the layout and vocabulary)")
    parser.add_argument("--cores", default=None, help="comma-separated cores for the peer (default: all allowed)")
    parser.add_argument("--peers", default=",".join(PEER_KINDS), help="comma-separated: mlserver,kserve")
    parser.add_argument("--intra-op-threads", type=int, default=1)
    args = parser.parse_args(argv)
    cores = {int(c) for c in args.cores.split(",")} if args.cores else None
    rows: list[Row] = []
    for kind in args.peers.split(","):
        try:
            rows += check_peer(kind, args.onnx, cores or os.sched_getaffinity(0), args.intra_op_threads)  # type: ignore[arg-type]
        except PeerError as exc:
            rows.append(Row(kind, "start", "-", "-", float("nan"), False, str(exc).splitlines()[0]))
            print(exc, file=sys.stderr)
    print_table(rows)
    failed = sum(not row.ok for row in rows)
    print(f"{len(rows) - failed} of {len(rows)} comparisons pass")
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
