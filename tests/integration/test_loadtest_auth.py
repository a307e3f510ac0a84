"""The load generator against a server that requires mutual TLS and a bearer token: with the token
(from --token-file) every call succeeds; without it every call is UNAUTHENTICATED."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from infersuite.services.ctr import CtrService
from infersuite.services.runtime import RuntimeSettings, build_server
from tests.fixtures_pki import pki  # noqa: F401

pytestmark = pytest.mark.integration
SHIPPED = Path(__file__).resolve().parents[2] / "shipped_models"


async def _loadtest(pki: Path, port: int, out: Path, *extra: str) -> tuple[str, dict | None]:  # noqa: F811
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "infersuite.loadtest", "run", "--service", "oip", "--param", "model=din-fp32",
        "--param", f"repository={SHIPPED}",
        "--target", f"localhost:{port}", "--metrics-url", "none", "--ca-cert", str(pki / "ca.pem"),
        "--client-cert", str(pki / "client.pem"), "--client-key", str(pki / "client.key"),
        "--duration", "1", "--warmup", "0.2", "--workers", "0", "--quiet", "--out", str(out), *extra,
        env={k: v for k, v in os.environ.items() if k != "INFERSUITE_CLIENT_TOKEN"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    report = out / "report.json"
    if not report.is_file():
        return output.decode(), None
    assert "s3cret" not in (out / "report.md").read_text()  # the token never lands in a report
    return output.decode(), json.loads(report.read_text())


async def test_load_generator_sends_the_token_over_mutual_tls(pki: Path, tmp_path: Path) -> None:  # noqa: F811
    settings = RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1", model_repository=SHIPPED,
                               tls_cert_file=pki / "server.pem", tls_key_file=pki / "server.key",
                               tls_client_ca_file=pki / "ca.pem", auth_token="s3cret-token")
    server, port = await build_server(settings, [CtrService()])
    await server.start()
    await server.wait_ready(timeout=60)
    (tmp_path / "token").write_text("s3cret-token\n")
    try:
        output, good = await _loadtest(pki, port, tmp_path / "good", "--token-file", str(tmp_path / "token"))
        assert good is not None, output[-3000:]
        assert good["steps"][0]["ok"] > 0 and not good["steps"][0]["errors"]
        output, refused = await _loadtest(pki, port, tmp_path / "refused")
        assert "UNAUTHENTICATED" in output and "Traceback" not in output
        assert refused is None or all(set(step["errors"]) == {"UNAUTHENTICATED"} for step in refused["steps"])
    finally:
        await server.stop(0)
