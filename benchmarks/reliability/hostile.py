"""The hostile-input corpus and the worst-case request memory of every model, on one suite process
hosting all four services: reports/reliability.md's "Hostile input" and "Worst-case request memory"
sections (figures in reports/reliability_hostile.json).

    python -m benchmarks.reliability.hostile --repository model_repository

Peak RSS is the kernel's own high-water mark of the suite process (VmHWM), reset just before what is
measured (/proc/<pid>/clear_refs), so it is the true peak, not a sample. A model's worst case is one
Open Inference Protocol request at its declared limits (infersuite/services/runtime/limits.py): every input at
its largest shape, shrunk until the axis products and the element budget hold.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from benchmarks.reliability import report
from benchmarks.reliability.measure import ROOT, checkout_suite
from infersuite.loadtest.local_suite import ServerProcess, loopback_settings
from infersuite.services.runtime.limits import ModelLimits, ValueRange, model_limits
from infersuite.services.runtime.repository import ModelRepository
from infersuite.services.runtime.settings import RuntimeSettings
from infersuite.services.runtime.tensors import DATATYPE_TO_NUMPY, TensorSpec
from tests.reliability import hostile
from tests.reliability.load import metric, scrape

SERVICES = ["*"]  # every family found (infersuite/services/runtime/service.py)
MAX_CANDIDATES, MAX_DURATION_S, MAX_PAYLOAD = 500, 20.0, 8192


class Peak:
    """The suite process's resident memory: now, and its peak since the last reset."""

    def __init__(self, pid: int):
        self._status, self._clear = Path(f"/proc/{pid}/status"), Path(f"/proc/{pid}/clear_refs")

    def _kib(self, field: str) -> int:
        line = next(x for x in self._status.read_text().splitlines() if x.startswith(field))
        return int(line.split()[1])

    def reset(self) -> float:
        self._clear.write_text("5")  # Linux >= 4.0: VmHWM := VmRSS
        return self.rss_mib()

    def rss_mib(self) -> float:
        return self._kib("VmRSS:") / 1024

    def peak_mib(self) -> float:
        return self._kib("VmHWM:") / 1024


async def corpus(channel: grpc.aio.Channel, repository: ModelRepository) -> list[hostile.Case]:
    din = repository.canonical("din")
    vocabulary = repository.resolve(din).meta["vocabulary"]
    oip = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    inputs = (await oip.ModelMetadata(service_pb2.ModelMetadataRequest(name=din))).inputs
    codec = await channel.unary_unary(hostile.SPLIT + "GetCodec")(b"")
    from infersuite.protos import splitcompute_pb2

    codec = splitcompute_pb2.GetCodecResponse.FromString(codec)
    return [*hostile.ctr_cases(vocabulary["n_items"], vocabulary["n_categories"], MAX_CANDIDATES),
            *hostile.oip_cases(din, [(t.name, t.datatype, len(t.shape)) for t in inputs]),
            *hostile.segmentation_cases(),
            *hostile.splitcompute_cases(codec.codec_version, tuple(codec.latent_shape), MAX_PAYLOAD),
            *hostile.audio_cases(MAX_DURATION_S)]


async def run_corpus(suite: ServerProcess, peak: Peak, repository: ModelRepository) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(suite.target) as channel:
        cases = await corpus(channel, repository)
        known_good = hostile.ctr_cases(**_vocabulary(repository), max_candidates=MAX_CANDIDATES)[-1]
        answer = await channel.unary_unary(known_good.method)(known_good.payload, timeout=60)
        rss_before = peak.reset()
        codes: Counter[str] = Counter()
        wrong, leaked = [], []
        for case in cases:
            code, details = await hostile.status(channel, suite.target, case, timeout=60)
            codes[code] += 1
            if code not in case.codes or (code != "OK" and not details):
                wrong.append([case.name, code, details[:160]])
            if hostile.leaks(details):
                leaked.append([case.name, details[:160]])
        peak_mib = peak.peak_mib()
        same = await channel.unary_unary(known_good.method)(known_good.payload, timeout=60) == answer
        status = (await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())).status
    internal = metric(scrape(suite.metrics_url), "infersuite_requests_total", code="INTERNAL")
    return {"cases": len(cases), "codes": dict(sorted(codes.items())), "wrong": wrong, "leaked_details": leaked,
            "internal_errors": internal, "healthy_after": status == health_pb2.HealthCheckResponse.SERVING,
            "known_good_unchanged": same, "rss_before_mib": round(rss_before, 1), "peak_rss_mib": round(peak_mib, 1)}


def _vocabulary(repository: ModelRepository) -> dict[str, int]:
    vocabulary = repository.resolve(repository.canonical("din")).meta["vocabulary"]
    return {"n_items": vocabulary["n_items"], "n_categories": vocabulary["n_categories"]}


def worst_case_shapes(limits: ModelLimits) -> dict[str, list[int]]:
    """Every input at its largest shape, its largest axes shrunk until products and budget hold. An
    axis shrinks together with the same axis of every input of the same largest shape (they share it)."""
    largest = {limit.name: limit.max_shape for limit in limits.inputs}
    shapes = {name: list(shape) for name, shape in largest.items()}

    def shrink(name: str, axis: int) -> None:
        size = max(shapes[name][axis] // 2, 1)
        for other, shape in largest.items():
            if shape == largest[name]:
                shapes[other][axis] = size

    for product in limits.products:
        while np.prod([shapes[n][a] for n, a in product.axes], dtype=np.float64) > product.max:
            shrink(*max(product.axes, key=lambda na: shapes[na[0]][na[1]]))
    while sum(np.prod(s, dtype=np.float64) for s in shapes.values()) > limits.max_elements:
        name = max(shapes, key=lambda n: np.prod(shapes[n], dtype=np.float64))
        shrink(name, int(np.argmax(shapes[name])))
    return shapes


def _values(shape: list[int], datatype: str, limit: ValueRange | None) -> np.ndarray:
    """In range (the lowest allowed value); floats without a range get 0.01, not silence."""
    dtype = DATATYPE_TO_NUMPY[datatype]
    fill = limit.low if limit is not None and limit.low is not None else (0.01 if dtype.kind == "f" else 0)
    return np.full(shape, fill, dtype)


def _request(name: str, limits: ModelLimits, specs: dict[str, TensorSpec]) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name=name)
    ranges = {limit.name: limit.values for limit in limits.inputs}
    for input_name, shape in worst_case_shapes(limits).items():
        spec = specs[input_name]
        request.inputs.add(name=input_name, datatype=spec.datatype, shape=shape)
        request.raw_input_contents.append(_values(shape, spec.datatype, ranges[input_name]).tobytes())
    return request


async def worst_case_request(oip: service_pb2_grpc.GRPCInferenceServiceStub, repository: ModelRepository,
                             name: str, version: str = "") -> tuple[service_pb2.ModelInferRequest | None, bool]:
    """The model's OIP request at its limits and whether meta.json declares them; None when only the
    element budget bounds its dynamic axes (a request at it could need any memory)."""
    entry = repository.resolve(name, version)
    meta = await oip.ModelMetadata(service_pb2.ModelMetadataRequest(name=name))
    specs = {t.name: TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in meta.inputs}
    limits = model_limits(name, list(specs.values()), entry.meta, entry.config.max_batch_size,
                          RuntimeSettings().max_request_elements)
    declared = "limits" in entry.meta
    if not declared and any(d < 0 for s in specs.values() for d in s.shape[1:]):
        return None, False
    return _request(name, limits, specs), declared


async def run_worst_cases(suite: ServerProcess, peak: Peak, repository: ModelRepository) -> list[dict[str, Any]]:
    rows = []
    async with grpc.aio.insecure_channel(suite.target, options=[("grpc.max_send_message_length", -1)]) as channel:
        oip = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        index = await oip.RepositoryIndex(service_pb2.RepositoryIndexRequest(ready=True))
        for model in sorted(index.models, key=lambda m: m.name):
            request, declared = await worst_case_request(oip, repository, model.name, model.version)
            if request is None:
                rows.append({"model": model.name, "declared": False, "code": "not sent: dynamic axes without "
                             "declared limits", "shapes": {}, "request_mib": 0, "peak_growth_mib": None})
                continue
            before = peak.reset()
            try:
                await oip.ModelInfer(request, timeout=300)
                code = "OK"
            except grpc.aio.AioRpcError as err:
                code = err.code().name
            rows.append({"model": model.name, "declared": declared, "code": code,
                         "shapes": {t.name: list(t.shape) for t in request.inputs},
                         "request_mib": round(request.ByteSize() / 2**20, 2),
                         "peak_growth_mib": round(peak.peak_mib() - before, 1)})
    return rows


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    # One serving process (loopback_settings' default workers=1): its peak RSS is the one measured.
    env = loopback_settings(args.repository.resolve(), SERVICES, log_level="ERROR", INFERSUITE_INTRA_OP_THREADS="1",
                            INFERSUITE_CTR_MAX_CANDIDATES=str(MAX_CANDIDATES),
                            INFERSUITE_AUDIO_MAX_DURATION_S=str(MAX_DURATION_S),
                            INFERSUITE_SPLITCOMPUTE_MAX_PAYLOAD_BYTES=str(MAX_PAYLOAD))
    suite = checkout_suite(env)
    try:
        await suite.ready(timeout_s=600)
        repository, peak = ModelRepository(args.repository), Peak(suite.proc.pid)
        return {"repository": str(args.repository), "transport": os.environ.get("INFERSUITE_TRANSPORT", "aio"),
                "corpus": await run_corpus(suite, peak, repository),
                "worst_case": await run_worst_cases(suite, peak, repository)}
    finally:
        suite.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reliability.hostile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "reliability.md")
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    report.write_section(args.out, "hostile", results)


if __name__ == "__main__":
    main()
