"""The Python peers (MLServer, KServe) serve the tiny DIN like onnxruntime does, pinned and on loopback only.

The peers are a benchmark dependency (`make peers`, ~2-5 minutes), not a test one: CI does not install them, and
these tests skip, saying so, where .peers/<kind> is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.peers.check import REQUEST_SHAPES, check_running
from benchmarks.peers.launch import PEER_KINDS, PeerError, PeerProcess, peer_installed, peers_dir, start_peer

pytestmark = pytest.mark.integration


def _needs(kind: str) -> None:
    if not peer_installed(kind):  # type: ignore[arg-type]
        pytest.skip(f"{kind} is not installed in {peers_dir() / kind}: `make peers` installs the benchmark peers"
                    " (CI does not)")


@pytest.fixture(scope="module", params=PEER_KINDS)
def served(request) -> Iterator[tuple[PeerProcess, Path]]:
    """(the peer, the ONNX file it serves), the peer pinned to the last core this process may use."""
    _needs(request.param)  # before the tiny model is trained for nothing
    onnx_path = request.getfixturevalue("tiny_ctr").repository / "din-fp32" / "1" / "model.onnx"
    with start_peer(request.param, onnx_path, cores={max(os.sched_getaffinity(0))}) as peer:
        yield peer, onnx_path


def test_the_peer_answers_ragged_requests_like_onnxruntime(served: tuple[PeerProcess, Path]) -> None:
    rows = check_running(*served)
    failures = [row for row in rows if not row.ok]
    assert not failures, failures
    # every request, both encodings, both outputs, plus the request for one output
    assert len(rows) == len(REQUEST_SHAPES) * 2 * 2 + 1
    assert {(row.encoding, row.output) for row in rows} == {
        (encoding, output) for encoding in ("raw", "typed") for output in ("click_probability", "activation_weights")}


def test_the_peer_runs_pinned_on_loopback_and_its_cpu_time_is_readable(served: tuple[PeerProcess, Path]) -> None:
    peer, _ = served
    host, port = peer.grpc_address.rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    core = max(os.sched_getaffinity(0))
    threads = [int(task.name) for pid in peer.pids() for task in (Path("/proc") / str(pid) / "task").iterdir()]
    assert len(threads) > 1 and all(os.sched_getaffinity(tid) == {core} for tid in threads)
    assert peer.cpu_seconds() > 0.0  # importing the framework alone costs CPU


def test_a_peer_that_cannot_load_the_model_fails_with_its_log_and_leaves_nothing_running(tmp_path) -> None:
    _needs("kserve")
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("not an ONNX file")
    with pytest.raises(PeerError, match=r"(?s)kserve exited with code 1 .*its log ends:.*ONNX"):
        start_peer("kserve", not_onnx, cores=os.sched_getaffinity(0), ready_timeout_s=60)
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _runs(p, str(not_onnx))]


def _runs(proc: Path, argument: str) -> bool:
    try:
        return argument in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def test_start_peer_refuses_unknown_peers_and_cores_it_may_not_use(tmp_path) -> None:
    with pytest.raises(PeerError, match="unknown peer 'torchserve'"):
        start_peer("torchserve", tmp_path / "m.onnx", cores={0})  # type: ignore[arg-type]
    _needs("kserve")
    with pytest.raises(PeerError, match="not a non-empty subset"):
        start_peer("kserve", tmp_path / "m.onnx", cores={max(os.sched_getaffinity(0)) + 1})
