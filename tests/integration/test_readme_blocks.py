"""Every Python block of the README runs as written (a user copies them): each is extracted and run
as a script from the repository against a real server on the shipped models, with only the target
rewritten to the test server's port; the TLS block runs from a folder holding the certificate files
it names, against a server with mutual TLS and its token."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from infersuite.services.audio import AudioService
from infersuite.services.ctr import CtrService
from infersuite.services.segmentation import SegmentationService
from infersuite.services.splitcompute import SplitComputeService
from tests.fixtures import serving
from tests.fixtures_pki import pki  # noqa: F401

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
TLS_TARGET = "scoring.internal:50051"


def _services() -> list:
    return [CtrService(), SegmentationService(), SplitComputeService(), AudioService()]


async def _run(block: str, cwd: Path, folder: Path) -> tuple[int, str]:
    """Runs the block as a script written in `folder`, from the working directory `cwd`."""
    script = folder / "readme_block.py"
    script.write_text(block)
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode or 0, output.decode()


def test_the_readme_has_the_blocks_this_test_runs() -> None:
    assert len(BLOCKS) >= 6 and sum(TLS_TARGET in b for b in BLOCKS) == 1
    assert all("localhost:50051" in b or TLS_TARGET in b for b in BLOCKS), "a block without a target runs nothing"


async def test_every_plaintext_block_runs_as_written(tmp_path: Path) -> None:
    async with serving(_services(), ROOT / "shipped_models", metrics_port=-1, intra_op_threads=1) as served:
        for block in (b for b in BLOCKS if TLS_TARGET not in b):
            code, output = await _run(block.replace("localhost:50051", served.address), ROOT, tmp_path)
            assert code == 0 and output.strip(), f"{block}\n---\n{output[-2000:]}"
            assert "Traceback" not in output and "nan" not in output.lower(), output[-2000:]


async def test_the_tls_block_runs_with_its_certificate_files(pki: Path, tmp_path: Path) -> None:  # noqa: F811
    for name in ("ca.pem", "client.pem", "client.key"):
        shutil.copy(pki / name, tmp_path / name)
    async with serving([CtrService()], ROOT / "shipped_models", metrics_port=-1, tls_cert_file=pki / "server.pem",
                       tls_key_file=pki / "server.key", tls_client_ca_file=pki / "ca.pem",
                       auth_token="s3cret") as served:
        (block,) = [b for b in BLOCKS if TLS_TARGET in b]
        code, output = await _run(block.replace(TLS_TARGET, f"localhost:{served.port}"), tmp_path, tmp_path)
    assert code == 0 and "[" in output, f"{block}\n---\n{output[-2000:]}"
