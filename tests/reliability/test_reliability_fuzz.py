"""Coverage-guided fuzzing (atheris) of the three untrusted-bytes decoders, bounded for CI: each
harness runs INFERSUITE_FUZZ_RUNS inputs (default 20000) from a copy of the corpus kept in the
repo. A crash (any exception but the service's own InvalidArgument), a hang over 10 s, or RSS over
1 GiB fails the test and leaves libFuzzer's reproducer in the test's tmp folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.reliability
pytest.importorskip("atheris", reason="atheris is not installed (requirements pin atheris==3.0.0)")

ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("INFERSUITE_FUZZ_RUNS", "20000"))
HARNESSES = [("wav_decoder", "wav"), ("image_decoder", "image"), ("splitcompute_payload", "splitcompute")]


@pytest.mark.parametrize(("harness", "corpus"), HARNESSES)
def test_fuzzing_finds_no_crash_hang_or_memory_blowup(harness: str, corpus: str, tmp_path: Path) -> None:
    seeds = ROOT / "fuzz" / "corpus" / corpus
    assert len(list(seeds.iterdir())) >= 3  # the seed corpus is in the repo
    work = tmp_path / "corpus"
    shutil.copytree(seeds, work)  # libFuzzer adds what it finds: never to the repo
    command = [sys.executable, "-m", f"fuzz.{harness}", f"-runs={RUNS}", "-rss_limit_mb=1024", "-timeout=10",
               "-max_len=4096", f"-artifact_prefix={tmp_path}/", "-print_final_stats=1", str(work)]
    # libFuzzer's -rss_limit_mb reads the peak RSS (getrusage), which Linux carries across execve: a harness
    # exec'd straight from this pytest process starts at pytest's own peak (1.2 GiB after the model tests) and
    # fails at once. A shell in between forks the harness from its own small process, so the peak is the harness's.
    hop = ["bash", "-c", 'rc=0; "$@" || rc=$?; exit $rc', "fuzz"]
    proc = subprocess.run([*hop, *command], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    done = re.search(r"Done (\d+) runs", log)
    assert done is not None and int(done.group(1)) == RUNS, log[-2000:]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("crash-", "oom-", "timeout-"))]
