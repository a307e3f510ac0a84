"""`pip install .` outside the repository: the wheel carries stubs generated at build time, the four
typed clients and the edge SDK import with grpc/protobuf/numpy (no torch, no pydantic, no runtime),
and the README's examples (infersuite/examples/*.py) run against a real server on the shipped models, in
plaintext and over mutual TLS with a bearer token."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from infersuite.services.audio import AudioService
from infersuite.services.ctr import CtrService
from infersuite.services.runtime import RuntimeSettings, build_server
from infersuite.services.segmentation import SegmentationService
from infersuite.services.splitcompute import SplitComputeService
from tests.fixtures_pki import pki  # noqa: F401

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "shipped_models"
BUNDLE = SHIPPED / "splitcompute-encoder-fp32" / "1"
CLIENT_MODULES = ["infersuite.clients", "infersuite.services.ctr.client", "infersuite.services.segmentation.client",
                  "infersuite.services.audio.client", "infersuite.services.splitcompute.client",
                  "infersuite.services.splitcompute.edge", "infersuite.services.channel", "infersuite.services.client"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from the repository's own files without any generated stub in them."""
    root = tmp_path_factory.mktemp("wheel")
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.split()
    for name in listed:
        if "_pb2" not in name and not name.startswith(("shipped_models/", "reports/")) and (ROOT / name).is_file():
            (root / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            (root / "src" / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "dist"), str(root / "src")], check=True, capture_output=True, timeout=300)
    return next((root / "dist").glob("infersuite-*.whl"))


@pytest.fixture(scope="module")
def site(wheel: Path) -> Path:
    target = wheel.parent.parent / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return target


def test_wheel_carries_generated_stubs_and_declares_minimal_dependencies(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(n).decode() for n in names if n.endswith("METADATA"))
    for proto in ("ctr", "segmentation", "splitcompute", "audio", "common"):
        assert {f"infersuite/protos/{proto}_pb2.py", f"infersuite/protos/{proto}_pb2_grpc.py"} <= names
    assert {f"{m.replace('.', '/')}.py" for m in CLIENT_MODULES} <= names
    top_level = {n.split("/", 1)[0] for n in names}  # one importable name, nothing that collides with others
    assert {t for t in top_level if not t.endswith(".dist-info")} == {"infersuite"}, sorted(top_level)
    required = {line.split()[1].split("<")[0].split(">")[0].split("=")[0] for line in metadata.splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line}
    assert required == {"grpcio", "protobuf", "numpy", "pillow"}
    assert {"infersuite/loadtest/__main__.py", "infersuite/examples/ctr_score.py"} <= names
    loadtest_extra = {line.split()[1].split("=")[0] for line in metadata.splitlines()
                      if line.startswith("Requires-Dist:") and "extra == \"loadtest\"" in line}
    assert {"psutil", "hdrhistogram", "matplotlib"} <= loadtest_extra, metadata


def test_the_load_generator_runs_from_the_installed_wheel(site: Path, tmp_path: Path) -> None:
    """python -m infersuite.loadtest from the wheel (its `loadtest` extra's packages come from this venv):
    it lists the request generators of every family."""
    done = subprocess.run([sys.executable, "-m", "infersuite.loadtest", "list"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(family in done.stdout for family in ("ctr", "segmentation", "splitcompute", "audio")), done.stdout


def test_clients_import_outside_the_repository_without_torch_or_pydantic(site: Path, tmp_path: Path) -> None:
    probe = ("import importlib, json, sys\n"
             f"mods = [importlib.import_module(m) for m in {CLIENT_MODULES!r}]\n"
             "print(json.dumps({'files': [m.__file__ for m in mods], 'heavy': sorted(k for k in sys.modules\n"
             "    if k.split('.')[0] in ('torch', 'pydantic', 'pydantic_settings')\n"
             "    or k == 'infersuite.services.runtime')}))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    assert found["heavy"] == []
    assert all(Path(f).is_relative_to(site) for f in found["files"])


async def _serve(**settings):
    services = [CtrService(), SegmentationService(), SplitComputeService(), AudioService()]
    server, port = await build_server(RuntimeSettings(port=0, metrics_port=-1, host="127.0.0.1",
                                                      model_repository=SHIPPED, intra_op_threads=1, **settings),
                                      services)
    await server.start()
    await server.wait_ready(timeout=120)
    return server, port


async def _run_example(site: Path, cwd: Path, script: str, env: dict[str, str], *args: str) -> tuple[int, str]:
    """Runs the wheel's infersuite.examples.<script> as a user would, from outside the repository."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", f"infersuite.examples.{Path(script).stem}", *args, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(site), **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    return process.returncode or 0, output.decode()


EXPECTED = {"ctr_score.py": "click probabilities:", "audio_embed.py": "scene embedding: (",
            "segmentation_segment.py": "exit layer:", "splitcompute_edge.py": "payload bytes:"}


async def test_every_example_runs_against_a_real_server(site: Path, tmp_path: Path) -> None:
    # own_model.py (any model, tritonclient) runs on user models in tests/integration/test_user_models.py
    examples = sorted(p.name for p in (ROOT / "infersuite" / "examples").glob("*.py") if p.name != "__init__.py")
    assert examples == sorted([*EXPECTED, "own_model.py"])
    server, port = await _serve()
    try:
        for script, expected in EXPECTED.items():
            args = (str(BUNDLE),) if script == "splitcompute_edge.py" else ()
            code, output = await _run_example(site, tmp_path, script, {"INFERSUITE_TARGET": f"127.0.0.1:{port}"},
                                              *args)
            assert code == 0 and expected in output, f"{script}:\n{output[-2000:]}"
            assert "nan" not in output.lower()
        await _every_repository_model_is_served(port)
    finally:
        await server.stop(0)


async def _every_repository_model_is_served(port: int) -> None:
    """Model control none (Triton's default): the edge encoder no service uses is served over OIP too."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        reply = await stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="splitcompute-encoder-fp32"), timeout=5)
        index = await stub.RepositoryIndex(service_pb2.RepositoryIndexRequest(), timeout=5)
    assert reply.name == "splitcompute-encoder-fp32" and reply.inputs
    assert {m.state for m in index.models} == {"READY"} and len(index.models) == len(list(SHIPPED.glob("*/1")))


async def test_examples_over_mutual_tls_with_a_bearer_token(site: Path, tmp_path: Path, pki: Path) -> None:  # noqa: F811
    server, port = await _serve(tls_cert_file=pki / "server.pem", tls_key_file=pki / "server.key",
                                tls_client_ca_file=pki / "ca.pem", auth_token="s3cret-token")
    secure = {"INFERSUITE_TARGET": f"localhost:{port}", "INFERSUITE_CLIENT_ROOT_CERTS": str(pki / "ca.pem"),
              "INFERSUITE_CLIENT_CERT": str(pki / "client.pem"), "INFERSUITE_CLIENT_KEY": str(pki / "client.key")}
    try:
        code, output = await _run_example(site, tmp_path, "ctr_score.py", secure)
        assert code != 0 and "UNAUTHENTICATED" in output  # mTLS alone is not enough: the token is required
        with_token = {**secure, "INFERSUITE_CLIENT_TOKEN": "s3cret-token"}
        for script, expected in EXPECTED.items():
            args = (str(BUNDLE),) if script == "splitcompute_edge.py" else ()
            code, output = await _run_example(site, tmp_path, script, with_token, *args)
            assert code == 0 and expected in output, f"{script}:\n{output[-2000:]}"
        await _check_container_health(port, pki)
    finally:
        await server.stop(0)


async def _check_container_health(port: int, pki: Path) -> None:  # noqa: F811
    """docker/healthcheck.py against the mutual-TLS server, configured as the container would be."""
    server_env = {"INFERSUITE_PORT": str(port), "INFERSUITE_TLS_CERT_FILE": str(pki / "server.pem"),
                  "INFERSUITE_HEALTH_ROOT_CERTS": str(pki / "ca.pem"), "INFERSUITE_AUTH_TOKEN": "s3cret-token"}
    client_cert = {"INFERSUITE_HEALTH_CLIENT_CERT": str(pki / "client.pem"),
                   "INFERSUITE_HEALTH_CLIENT_KEY": str(pki / "client.key")}
    for env, expected_code, expected in ((server_env, 1, "UNAVAILABLE"), ({**server_env, **client_cert}, 0, "SERVING")):
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "docker" / "healthcheck.py"), env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == expected_code and expected in output.decode(), output.decode()


def _python(version: str) -> Path | None:
    """The interpreter of another Python version (pyenv's, as on the project's machines), or None."""
    import shutil

    found = shutil.which(f"python{version}")
    pyenv = Path.home() / ".pyenv" / "versions"
    candidates = [Path(found)] if found else []
    candidates += sorted(pyenv.glob(f"{version}.*/bin/python{version}")) if pyenv.is_dir() else []
    for candidate in candidates:
        probe = subprocess.run([str(candidate), "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=60)
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(map(int, version.split(".")))):
            return candidate
    return None


@pytest.mark.parametrize("version", ["3.12", "3.13"])
async def test_the_wheel_installs_and_its_client_runs_on_newer_pythons(wheel: Path, tmp_path: Path,
                                                                        version: str) -> None:
    """The client wheel declares Python 3.11-3.13: installed with its dependencies from the package index
    into a fresh venv of that Python, the ctr example runs against a real server."""
    interpreter = _python(version)
    if interpreter is None:
        pytest.skip(f"no Python {version} interpreter on this machine (pyenv install {version})")
    venv = tmp_path / "venv"
    subprocess.run([str(interpreter), "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-2000:]
    server, port = await _serve()
    try:
        process = await asyncio.create_subprocess_exec(
            str(venv / "bin" / "python"), "-m", "infersuite.examples.ctr_score", cwd=tmp_path,
            env={"PATH": os.environ.get("PATH", ""), "INFERSUITE_TARGET": f"127.0.0.1:{port}"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    finally:
        await server.stop(0)
    assert process.returncode == 0 and EXPECTED["ctr_score.py"] in output.decode(), output.decode()[-2000:]
