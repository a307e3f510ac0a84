"""A real Prometheus server (Debian's `prometheus`) for the tests: scrapes given targets every
second with the shipped rule files, answers PromQL over its HTTP API."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusServer:
    def __init__(self, workdir: Path, targets: dict[str, str], rule_files: list[Path]):
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": "infersuite", "static_configs": [
                {"targets": [address], "labels": {"infersuite_service": service}}
                for service, address in targets.items()]}],
        }
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._log = (workdir / "prometheus.log").open("w")
        self._process = subprocess.Popen(
            ["prometheus", f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT)
        self.log_path = workdir / "prometheus.log"

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as reply:
            return json.loads(reply.read())

    def query(self, promql: str) -> list[dict]:
        answer = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def wait_targets_up(self, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if len([s for s in self.query('up{job="infersuite"} == 1')]) == count:
                    return
            except OSError:
                pass
            if self._process.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(f"Prometheus: {count} targets not up:\n{self.log_path.read_text()[-2000:]}")

    def wait_value(self, promql: str, want_series: int, timeout_s: float = 45) -> list[dict]:
        """Polls until the query returns `want_series` series, all with a finite value."""
        deadline, result = time.monotonic() + timeout_s, []
        while time.monotonic() < deadline:
            result = self.query(promql)
            finite = [s for s in result if s["value"][1] not in ("NaN", "+Inf", "-Inf")]
            if len(finite) >= want_series:
                return finite
            time.sleep(1.0)
        raise AssertionError(f"{promql}: wanted {want_series} finite series, last answer {result}")

    def close(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._log.close()
