"""reports/serving.md (+ .json, + .png) from one `make bench-serving` run: stamped INVALID at the top
when the run's validity checks failed (validity.py), with a section on those checks either way."""

from __future__ import annotations

import collections
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks.serving import validity

GOALS = {"other_cpu_ms": 0.30, "batching_small": 2.0, "batching_ranking": 1.5, "peer_ratio": 1.5,
         "of_ceiling_ranking": 0.70, "p99_ms": 50.0}


def profile_table(path: Path, top: int = 25) -> dict[str, Any]:
    """py-spy raw samples -> self and inclusive shares of the top functions."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames, n = stack.split(";"), int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            inclusive[frame] += n
    share = lambda c: [(name, n / max(total, 1)) for name, n in c.most_common(top)]  # noqa: E731
    return {"samples": total, "self": share(own), "inclusive": share(inclusive)}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _closed(steps: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for s in steps:
        if s["kind"] in ("closed", "floor"):
            groups[(s["server"], s["mix"], s["api"], s["clients"])].append(s)
    return groups


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _server_core(run: dict, field: str) -> float | None:
    """The server core's figure in a step's machine report (the first server core; None when unread)."""
    cores = [c for c in (run.get("machine") or {}).get("cores", []) if c["role"] in ("server", "shared")]
    return cores[0][field] if cores else None


def _median_of(runs: list[dict], field: str) -> float | None:
    values = [v for v in (_server_core(r, field) for r in runs) if v is not None]
    return _median(values) if values else None


def _closed_table(groups: dict[tuple, list[dict]]) -> list[str]:
    lines = ["| server | mix | API | clients | req/s min / median / max | p50 ms | p99 ms | candidates/s | "
             "server CPU ms/req | model ms/req | other ms/req | server core busy | own share of it | errors |",
             "|" + "---|" * 14]
    for (server, mix, api, clients), runs in groups.items():
        rates = sorted(r["throughput_rps"] for r in runs)
        other = [r["other_cpu_ms_per_request"] for r in runs if r.get("other_cpu_ms_per_request") is not None]
        model = [r["model_cpu_ms_per_request"] for r in runs if r.get("other_cpu_ms_per_request") is not None]
        lines.append(
            f"| {server} | {mix} | {api} | {clients} | {rates[0]:.0f} / {_median(rates):.0f} / {rates[-1]:.0f} | "
            f"{_median([r['p50_ms'] for r in runs]):.2f} | {_median([r['p99_ms'] for r in runs]):.1f} | "
            f"{_median([r.get('candidates_per_s', 0.0) for r in runs]):.0f} | "
            f"{_median([r['server_cpu_ms_per_request'] for r in runs]):.3f} | "
            f"{_fmt(_median(model) if model else None, 3)} | {_fmt(_median(other) if other else None, 3)} | "
            f"{_fmt(_median_of(runs, 'busy_share'))} | {_fmt(_median_of(runs, 'own_share_of_busy'))} | "
            f"{sum(r['errors'] for r in runs)} |")
    return lines


def _rate(groups: dict[tuple, list[dict]], server: str, mix: str, api: str, clients: int) -> float | None:
    runs = groups.get((server, mix, api, clients))
    return _median([r["throughput_rps"] for r in runs]) if runs else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _best_open(steps: list[dict], server: str) -> float | None:
    ok = [s["rate"] for s in steps if s["kind"] == "open" and s["server"] == server and s["p99_ms"] <= GOALS["p99_ms"]
          and not s["errors"] and s["throughput_rps"] >= 0.95 * s["rate"]]
    return max(ok) if ok else None


def _goal(value: float | None, goal: float, higher: bool = True, unit: str = "x") -> str:
    if value is None:
        return "not measured"
    met = value >= goal if higher else value <= goal
    shown = f"{value:.0%}" if unit == "%" else f"{value:.3f} ms" if unit == "ms" else f"{value:.2f}x"
    target = f"{goal:.0%}" if unit == "%" else f"{goal} ms" if unit == "ms" else f"{goal}x"
    return f"**{shown}** (goal {'>=' if higher else '<='} {target}: {'met' if met else 'MISSED'})"


def _summary(context: dict, ceilings: dict, steps: list[dict], groups: dict[tuple, list[dict]]) -> list[str]:
    top = max(c for (_, _, _, c) in groups) if groups else 64
    lines = ["## Figures against the first serving issue's goals (kept for comparison across reports)", ""]
    for mix in ceilings:
        for api in ("ctr Score", "OIP ModelInfer"):
            runs = groups.get(("infersuite", mix, api, top), [])
            other = [r["other_cpu_ms_per_request"] for r in runs if r.get("other_cpu_ms_per_request") is not None]
            lines.append(f"- Server CPU outside model execution, {api}, {mix} mix, {top} clients: "
                         + _goal(_median(other) if other else None, GOALS["other_cpu_ms"], higher=False, unit="ms"))
    for mix, goal in (("small", GOALS["batching_small"]), ("ranking", GOALS["batching_ranking"])):
        if mix not in ceilings:
            continue
        for api in ("ctr Score", "OIP ModelInfer"):
            on = _rate(groups, "infersuite", mix, api, top)
            off = _rate(groups, "infersuite, batching off", mix, api, top)
            lines.append(f"- Batching on vs off, {api}, {mix} mix, {top} clients: " + _goal(_ratio(on, off), goal))
        best = max(ceilings[mix], key=lambda b: ceilings[mix][b])
        lines.append(f"- Bare onnxruntime ceiling, {mix} mix: best batch {best} = {ceilings[mix][best]:.0f} req/s vs "
                     f"batch 1 = {ceilings[mix]['1']:.0f} req/s: "
                     + _goal(ceilings[mix][best] / ceilings[mix]["1"], 1.0))
    peers = [s for s in ("mlserver", "kserve") if any(k[0] == s for k in groups)]
    for mix in ceilings:
        mine = _rate(groups, "infersuite", mix, "OIP ModelInfer", top)
        best_peer = max((_rate(groups, p, mix, "OIP ModelInfer", top) or 0.0 for p in peers), default=None)
        lines.append(f"- Throughput vs the best peer, OIP, {mix} mix, {top} clients: "
                     + _goal(_ratio(mine, best_peer), GOALS["peer_ratio"]))
        best_ceiling = max(ceilings[mix].values())
        lines.append(f"- Share of the one-core bare-onnxruntime ceiling ({best_ceiling:.0f} req/s), OIP, {mix} mix: "
                     + _goal(_ratio(mine, best_ceiling), GOALS["of_ceiling_ranking"] if mix == "ranking" else 0.0,
                             unit="%"))
    if any(s["kind"] == "open" for s in steps):
        mine_open = _best_open(steps, "infersuite")
        peer_open = max((_best_open(steps, p) or 0.0 for p in peers), default=None)
        lines.append(f"- Open loop, highest tried rate with p99 <= {GOALS['p99_ms']:.0f} ms "
                     f"({next(iter(ceilings))} mix): "
                     f"infersuite {_fmt(mine_open, 0)} req/s, best peer {_fmt(peer_open, 0)} req/s: "
                     + _goal(_ratio(mine_open, peer_open), GOALS["peer_ratio"]))
    return lines


MINIMAL = "minimal Python OIP server (grpcio sync)"  # benchmarks/serving/servers.py's yardstick
ISSUE_GOALS = {"unary_64": 1.5, "unary_1": 1.2, "stream": 2.0, "of_ceiling": 0.60, "open": 1.5, "small_batching": 2.0}


def _cpu_by_round(groups: dict[tuple, list[dict]], server: str, mix: str, api: str, clients: int) -> dict[int, float]:
    return {r["round"]: r["server_cpu_ms_per_request"] for r in groups.get((server, mix, api, clients), [])
            if r.get("server_cpu_ms_per_request")}


def _paired(numerator: dict[int, float], denominator: dict[int, float]) -> list[float]:
    """Per-round ratios numerator / denominator over the rounds both were measured in."""
    return [numerator[r] / denominator[r] for r in sorted(numerator) if denominator.get(r)]


def _ratio_goal(label: str, ratios: list[float], goal: float) -> str:
    if not ratios:
        return f"- {label}: not measured"
    spread = f" (rounds: {', '.join(f'{r:.2f}' for r in ratios)})" if len(ratios) > 1 else ""
    return f"- {label}: " + _goal(_median(ratios), goal) + spread


def _cpu_goals(ceilings: dict, steps: list[dict], groups: dict[tuple, list[dict]]) -> list[str]:
    """Issue 26's goals: requests per server CPU-second against KServe, paired per round (KServe's CPU per
    request / the suite's), the share of the ceiling with its physical limit, open loop, small-mix batching."""
    if not any(k[0] == "kserve" for k in groups):
        return []
    top = max(c for (_, _, _, c) in groups)
    kserve = {c: _cpu_by_round(groups, "kserve", "ranking", "OIP ModelInfer", c) for c in (1, top)}
    lines = ["## Goals per server CPU (against KServe, ranking mix unless named; paired per-round ratios of "
             "server CPU per request, median)", ""]
    for api in ("OIP ModelInfer", "ctr Score"):
        mine = _cpu_by_round(groups, "infersuite", "ranking", api, top)
        lines.append(_ratio_goal(f"{api}, {top} clients, requests per server CPU-second vs KServe OIP",
                                 _paired(kserve[top], mine), ISSUE_GOALS["unary_64"]))
    lines.append(_ratio_goal("OIP ModelInfer, 1 client, vs KServe", _paired(
        kserve[1], _cpu_by_round(groups, "infersuite", "ranking", "OIP ModelInfer", 1)), ISSUE_GOALS["unary_1"]))
    sync = "infersuite, sync transport"  # INFERSUITE_TRANSPORT=sync (infersuite/services/runtime/sync_transport.py)
    for clients, goal in ((top, ISSUE_GOALS["unary_64"]), (1, ISSUE_GOALS["unary_1"])):
        mine = _cpu_by_round(groups, sync, "ranking", "OIP ModelInfer", clients)
        if mine:
            lines.append(_ratio_goal(f"OIP ModelInfer on the sync transport, {clients} client(s), vs KServe",
                                     _paired(kserve[clients], mine), goal))
            lines.append(_ratio_goal(f"OIP ModelInfer, {clients} client(s), sync transport vs grpc.aio per server CPU",
                                     _paired(_cpu_by_round(groups, "infersuite", "ranking", "OIP ModelInfer", clients),
                                             mine), 1.0))
    for clients in (top, 1):  # a yardstick, not a goal: what any Python server on grpcio sync reaches at best
        least = _cpu_by_round(groups, MINIMAL, "ranking", "OIP ModelInfer", clients)
        if least:
            lines.append(f"- Yardstick: {MINIMAL}, {clients} client(s), vs KServe: "
                         f"**{_median(_paired(kserve[clients], least)):.2f}x** (rounds: "
                         + ", ".join(f"{r:.2f}" for r in _paired(kserve[clients], least)) + ")")
    stream = [s["server_cpu_ms_per_request"] for s in steps
              if s["kind"] == "streaming" and s["api"] == "OIP ModelStreamInfer" and s.get("server_cpu_ms_per_request")]
    if stream and kserve[top]:
        lines.append(f"- OIP ModelStreamInfer, {top} clients, vs KServe unary (KServe's median over rounds, one "
                     "streaming run): " + _goal(_median(list(kserve[top].values())) / _median(stream),
                                                ISSUE_GOALS["stream"]))
    floors: dict[str, list[float]] = collections.defaultdict(list)
    for (server, *_), runs in groups.items():
        if server.startswith("empty"):
            floors[server] += [r["server_cpu_ms_per_request"] for r in runs]
    aio = [v for name, values in floors.items() if "aio" in name for v in values]
    if "ranking" in ceilings:
        best, single = max(ceilings["ranking"].values()), ceilings["ranking"]["1"]
        rate = _rate(groups, "infersuite", "ranking", "OIP ModelInfer", top)
        limit = ""
        if aio:
            per_request_ms = _median(aio) + 1000.0 / single
            limit = (f"; physical limit on grpc.aio: 1 / (empty-RPC floor {_median(aio):.3f} ms + bare model at "
                     f"batch 1 {1000.0 / single:.3f} ms) = {1000.0 / per_request_ms:.0f} req/s = "
                     f"{1000.0 / per_request_ms / best:.0%} of the ceiling")
        lines.append(f"- Share of the one-core bare-onnxruntime ceiling ({best:.0f} req/s), OIP, {top} clients: "
                     + _goal(_ratio(rate, best), ISSUE_GOALS["of_ceiling"], unit="%") + limit)
    if any(s["kind"] == "open" for s in steps):
        lines.append(f"- Open loop, highest tried rate with p99 <= {GOALS['p99_ms']:.0f} ms vs KServe: "
                     + _goal(_ratio(_best_open(steps, "infersuite"), _best_open(steps, "kserve")),
                             ISSUE_GOALS["open"]))
    for api in ("OIP ModelInfer", "ctr Score"):
        lines.append(_ratio_goal(f"Small mix, {api}, {top} clients, batching on vs off per server CPU", _paired(
            _cpu_by_round(groups, "infersuite, batching off", "small", api, top),
            _cpu_by_round(groups, "infersuite", "small", api, top)), ISSUE_GOALS["small_batching"]))
    if floors:
        lines.append("- Transport floors (empty unary RPC, same generator, same core, server CPU per request, "
                     "median over rounds): " + "; ".join(f"{name}: {_median(values):.3f} ms"
                                                        for name, values in sorted(floors.items())))
    return lines


def _other_tables(steps: list[dict]) -> list[str]:
    lines: list[str] = []
    opened = [s for s in steps if s["kind"] == "open"]
    if opened:
        lines += ["", "## Open loop (Poisson arrivals, OIP ModelInfer)", "",
                  "| server | offered req/s | answered req/s | p50 ms | p99 ms | server CPU ms/req | errors |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {s['server']} | {s['rate']} | {s['throughput_rps']:.0f} | {s['p50_ms']:.2f} | "
                  f"{s['p99_ms']:.1f} | "
                  f"{s['server_cpu_ms_per_request']:.3f} | {s['errors']} |" for s in opened]
    for kind, title in (("streaming", "Streaming vs unary (same server, same mix)"),
                        ("both_cores", "All cores, no pinning: servers and generator share the machine's cores "
                                       "(as an unpinned deployment runs; the workers check)")):
        rows = [s for s in steps if s["kind"] == kind]
        if rows:
            lines += ["", f"## {title}", "", "| server | API | clients | req/s | p99 ms | server CPU ms/message | "
                      "other ms/message |", "|---|---|---|---|---|---|---|"]
            lines += [f"| {s['server']} | {s['api']} | {s['clients']} | {s['throughput_rps']:.0f} | "
                      f"{s['p99_ms']:.1f} | "
                      f"{s['server_cpu_ms_per_request']:.3f} | {_fmt(s.get('other_cpu_ms_per_request'), 3)} |"
                      for s in rows]
    return lines


def _validity_lines(context: dict, steps: list[dict], verdict: validity.Verdict) -> list[str]:
    gate = context["gate"]
    saturated = [r for r in steps if validity.saturated(r) and (r.get("machine") or {}).get("pinned")]
    busy = [b for b in (_server_core(r, "busy_share") for r in saturated) if b is not None]
    foreign = [c["foreign_share"] for r in steps for c in (r.get("machine") or {}).get("cores", [])]
    lines = ["## Validity of this run", "",
             f"- **{'valid' if verdict.valid else 'INVALID'}**: {verdict.steps_flagged} of {verdict.steps_checked} "
             f"measured steps flagged.",
             f"- Before the run: {'quiet' if gate['quiet'] else 'BUSY, started with --force'} after "
             f"{gate['waited_s']:.0f} s of sampling; load average before {_loads(context['load_average_before'])}, "
             f"after {_loads(context['load_average_after'])} (1, 5, 15 min; during the run the benchmark's own "
             "server and generator count in it).",
             f"- Saturated pinned steps ({len(saturated)}: closed loop and streaming at >= "
             f"{validity.SATURATING_CLIENTS} clients, the ceiling): server core busy "
             + (f"min {min(busy):.3f}, median {_median(busy):.3f}" if busy else "not read")
             + f" (/proc/stat; flagged below {validity.BUSY_AT_SATURATION}).",
             "- Foreign work (core busy time beyond irq/softirq and the benchmark's own processes), any "
             f"benchmark core, any step: max {max(foreign, default=float('nan')):.1%} "
             f"(flagged above {validity.FOREIGN_SHARE_MAX:.0%}).",
             "", "Every step's machine report (per core: busy, own share of busy, foreign, irq/softirq, steal; the "
             "foreign processes that used CPU) is in the .json beside this file."]
    if verdict.reasons:
        lines += ["", "Flagged:", "", *[f"- {reason}" for reason in verdict.reasons]]
    return lines


def _loads(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _configuration_lines(configurations: dict[str, dict[str, str]]) -> list[str]:
    lines = ["## What each server ran (as configured for this run)", ""]
    for name, settings in configurations.items():
        lines.append(f"- **{name}**: " + "; ".join(f"{key}: `{value}`" for key, value in settings.items()))
    return lines


def _ceiling_lines(ceilings: dict[str, dict[str, list[float]]]) -> list[str]:
    sizes = list(next(iter(ceilings.values())))
    lines = ["## Bare onnxruntime ceiling on the server core (req/s by batch size, min / median / max over rounds)",
             "", "| mix | " + " | ".join(f"batch {b}" for b in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for mix, rates in ceilings.items():
        lines.append(f"| {mix} | " + " | ".join(f"{min(v):.0f} / {_median(v):.0f} / {max(v):.0f}"
                                                for v in rates.values()) + " |")
    return [*lines, "", "Measured in every round beside the suite and the peers (one pass per round, in the rotated "
            "order). Batches are formed as the runtime's batcher forms them: 64 waiting requests sorted by "
            "history length, cut into batches of B, in the rows layout (candidates concatenated, histories "
            "padded to the batch's longest)."]


def _profile_lines(profile: dict) -> list[str]:
    if not profile:
        return []
    lines = ["", f"## Profile of the suite at saturation (ctr Score, 64 clients; py-spy, {profile['samples']} samples, "
             "Python frames" + (", only the thread holding the GIL" if profile.get("gil_only") else "")
             + "; native gRPC/protobuf work shows as the asyncio callback that runs it)", "",
             "Server CPU per request by thread (/proc):", "",
             *[f"- {name}: {ms:.3f} ms" for name, ms in sorted(profile.get("threads_ms_per_request", {}).items())],
             "",
             "| self share | function |", "|---|---|"]
    lines += [f"| {share:.1%} | `{name}` |" for name, share in profile["self"][:20]]
    lines += ["", "| inclusive share | function |", "|---|---|"]
    lines += [f"| {share:.1%} | `{name}` |" for name, share in profile["inclusive"][:25]]
    return lines


def _plot(path: Path, groups: dict[tuple, list[dict]], steps: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    keys = [k for k in groups if k[3] == max(c for *_, c in groups) and not k[0].startswith("empty")]
    labels = [f"{s}\n{m} {a}" for s, m, a, _ in keys]
    medians = [_median([r["throughput_rps"] for r in groups[k]]) for k in keys]
    lows = [m - min(r["throughput_rps"] for r in groups[k]) for m, k in zip(medians, keys, strict=True)]
    highs = [max(r["throughput_rps"] for r in groups[k]) - m for m, k in zip(medians, keys, strict=True)]
    left.barh(range(len(keys)), medians, xerr=[lows, highs], color="tab:blue")
    left.set_yticks(range(len(keys)), labels, fontsize=7)
    left.set_xlabel("req/s (median, min-max over rounds)")
    for server in sorted({s["server"] for s in steps if s["kind"] == "open"}):
        rows = [s for s in steps if s["kind"] == "open" and s["server"] == server]
        right.plot([s["rate"] for s in rows], [s["p99_ms"] for s in rows], marker="o", label=server)
    right.axhline(GOALS["p99_ms"], color="grey", linestyle="--")
    right.set_yscale("log")
    right.set_xlabel("offered req/s (open loop)")
    right.set_ylabel("p99 ms")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _median_field(groups: dict[tuple, list[dict]], key: tuple, field: str) -> float | None:
    values = [r[field] for r in groups.get(key, []) if r.get(field) is not None]
    return _median(values) if values else None


def _budget_lines(ceilings: dict, steps: list[dict], groups: dict[tuple, list[dict]]) -> list[str]:
    """Each per-CPU goal as a budget of server CPU per request, beside what the same run measured as its
    unavoidable parts (the empty-RPC floor of each transport, bare onnxruntime at batch 1) and the suite's
    own parts (its model CPU and the rest): a goal whose budget is below floor + bare model cannot be met by
    any server on that transport; otherwise the line says how much of the rest would have to go."""
    if not any(k[0] == "kserve" for k in groups) or "ranking" not in ceilings:
        return []
    top = max(c for (_, _, _, c) in groups)
    floors = {transport: [r["server_cpu_ms_per_request"] for (server, *_), runs in groups.items()
                          if server.startswith("empty") and transport in server for r in runs]
              for transport in ("aio", "sync")}
    floor = {t: _median(v) for t, v in floors.items() if v}
    if not floor:
        return []
    bare = 1000.0 / ceilings["ranking"]["1"]
    lines = ["## Why each missed goal is missed: the budget per request (same run)", "",
             f"Unavoidable on one core, per ranking request: bare onnxruntime at batch 1 {bare:.3f} ms, plus the "
             "empty-RPC floor of the transport: " + ", ".join(f"{t} {v:.3f} ms" for t, v in sorted(floor.items()))
             + ". A goal is a budget of server CPU per request; below floor + bare model no server on that "
             "transport meets it.", ""]

    def budget(label: str, limit: float, server: str, api: str, clients: int) -> None:
        key = (server, "ranking", api, clients)
        cpu, model = (_median_field(groups, key, f) for f in ("server_cpu_ms_per_request", "model_cpu_ms_per_request"))
        if cpu is None:
            return
        transport = "sync" if "sync" in server else "aio"
        least = floor.get(transport, floor.get("aio", 0.0)) + bare
        verdict = (f"impossible on {transport} (floor + bare model {least:.3f} ms > budget)" if least > limit
                   else f"floor + bare model {least:.3f} ms leaves {limit - least:.3f} ms for the request path")
        parts = f"model {model:.3f} ms ({model - bare:+.3f} vs bare), rest {cpu - model:.3f} ms" if model else ""
        lines.append(f"- {label}: budget {limit:.3f} ms; measured {cpu:.3f} ms ({parts}); {verdict}"
                     + ("" if cpu <= limit else f"; {cpu - limit:.3f} ms over"))

    kserve_top = _median_field(groups, ("kserve", "ranking", "OIP ModelInfer", top), "server_cpu_ms_per_request")
    kserve_one = _median_field(groups, ("kserve", "ranking", "OIP ModelInfer", 1), "server_cpu_ms_per_request")
    if kserve_top:
        for server in ("infersuite", "infersuite, sync transport"):
            budget(f"{server}, OIP ModelInfer at {top} clients >= {ISSUE_GOALS['unary_64']}x KServe "
                   f"({kserve_top:.3f} ms)", kserve_top / ISSUE_GOALS["unary_64"], server, "OIP ModelInfer", top)
        budget(f"ctr Score at {top} clients >= {ISSUE_GOALS['unary_64']}x KServe",
               kserve_top / ISSUE_GOALS["unary_64"], "infersuite", "ctr Score", top)
        stream = [x["server_cpu_ms_per_request"] for x in steps if x["kind"] == "streaming"
                  and x["api"] == "OIP ModelStreamInfer" and x.get("server_cpu_ms_per_request")]
        if stream:
            limit = kserve_top / ISSUE_GOALS["stream"]
            lines.append(f"- OIP ModelStreamInfer >= {ISSUE_GOALS['stream']}x KServe unary: budget {limit:.3f} ms; "
                         f"measured {_median(stream):.3f} ms per message; a stream message skips most of the "
                         f"per-call floor, but the bare model alone is {bare:.3f} ms"
                         + (" > budget: impossible" if bare > limit else ""))
    for clients in (top, 1):
        least = _median_field(groups, (MINIMAL, "ranking", "OIP ModelInfer", clients), "server_cpu_ms_per_request")
        sync = _median_field(groups, ("infersuite, sync transport", "ranking", "OIP ModelInfer", clients),
                             "server_cpu_ms_per_request")
        kserve = kserve_top if clients == top else kserve_one
        if least and sync and kserve:
            goal = ISSUE_GOALS["unary_64" if clients == top else "unary_1"]
            lines.append(f"- What Python on grpcio reaches, {clients} client(s): the {MINIMAL} (parse, raw views, "
                         f"onnxruntime, raw outputs; nothing checked, limited or counted) costs {least:.3f} ms per "
                         f"request, {least - (floor.get('sync', 0.0) + bare):+.3f} ms over the sync floor + bare model "
                         f"(grpcio's per-call threads and Python beyond an empty RPC); the budget of "
                         f"{goal}x KServe is {kserve / goal:.3f} ms"
                         + (": no Python grpcio server met it in this run" if least > kserve / goal else "")
                         + f". The suite's sync transport costs {sync - least:+.3f} ms more than it "
                         "(its checks, limits, admission, statistics and metrics)")
    if kserve_one:
        for server in ("infersuite", "infersuite, sync transport"):
            budget(f"{server}, OIP ModelInfer at 1 client >= {ISSUE_GOALS['unary_1']}x KServe ({kserve_one:.3f} ms)",
                   kserve_one / ISSUE_GOALS["unary_1"], server, "OIP ModelInfer", 1)
    best = max(ceilings["ranking"].values())
    lines.append(f"- >= {ISSUE_GOALS['of_ceiling']:.0%} of the one-core ceiling ({best:.0f} req/s): budget "
                 f"{1000.0 / (best * ISSUE_GOALS['of_ceiling']):.3f} ms per request; the floor + bare model bound is "
                 + ", ".join(f"{t} {1000.0 / (v + bare) / best:.0%}" for t, v in sorted(floor.items()))
                 + " of the ceiling")
    if "small" in ceilings:
        gain = max(ceilings["small"].values()) / ceilings["small"]["1"]
        key = ("infersuite, batching off", "small", "OIP ModelInfer", top)
        cpu, model = (_median_field(groups, key, f) for f in ("server_cpu_ms_per_request", "model_cpu_ms_per_request"))
        if cpu and model:
            bound = cpu / (cpu - model + model / gain)
            lines.append(f"- Small mix, batching on >= {ISSUE_GOALS['small_batching']}x off per CPU: with batching "
                         f"off a request costs {cpu:.3f} ms, of which the model {model:.3f} ms; batching can save at "
                         f"most the model's share (bare onnxruntime's best batch is {gain:.2f}x batch 1 here), so "
                         f"the best possible ratio is {bound:.2f}x while the rest ({cpu - model:.3f} ms) stays per "
                         "request")
    lines += ["", "The open-loop goal follows the per-CPU ones: on one core, the highest rate within the p99 bound "
              "is about the core's requests per CPU-second, less the headroom queueing needs."]
    return lines


def write(out: Path, context: dict, ceilings_by_round: dict[str, dict[str, list[float]]], steps: list[dict],
          profile: dict, verdict: validity.Verdict) -> None:
    groups = _closed(steps)
    ceilings = {mix: {size: _median(rates) for size, rates in by_size.items()}
                for mix, by_size in ceilings_by_round.items()}
    lines = [
        *validity.stamp(verdict),
        "# Serving efficiency: where the server's CPU goes, and the suite against its ceiling and its peers", "",
        f"Command: `{context['command']}` ({context['started']}, {context['minutes']:.0f} min). Machine: "
        f"{context['machine']}; load average before {_loads(context['load_average_before'])}, after "
        f"{_loads(context['load_average_after'])}. Server pinned to cores "
        f"{context['server_cores']}, load generator to {context['generator_cores']} (its own process, requests "
        f"serialized in advance). {context['rounds']} interleaved rounds, {context['warmup']} s warm-up + "
        f"{context['seconds']} s measured per step; figures are medians over rounds. Model `din-fp32` (the rows "
        "layout), one onnxruntime intra-op thread everywhere; the peers serve the same ONNX file. Mean candidates "
        "per request: " + ", ".join(f"{m} {v:.1f}" for m, v in context["mean_candidates"].items()) + ".", "",
        *_validity_lines(context, steps, verdict), "",
        *_cpu_goals(ceilings, steps, groups), "",
        *_budget_lines(ceilings, steps, groups), "",
        *_summary(context, ceilings, steps, groups), "",
        *_configuration_lines(context.get("configurations", {})), "",
        "## Closed loop", "", *_closed_table(groups), "",
        "Server CPU is the server's whole process tree (all threads) over the measured window, from /proc; model "
        "is the CPU its onnxruntime executor threads spent inside `session.run` "
        "(`infersuite_model_compute_cpu_seconds_total`); other = the rest (gRPC, protobuf, conversion, batching, "
        "metrics, the event loop). Server core busy = the share of the measured window the server's core was "
        "busy, from /proc/stat (not from the server's own CPU, which cannot tell a starved server from an idle "
        "one); own share of it = the part of that busy time the benchmark's own processes account for (the rest "
        "is irq/softirq work, mostly loopback networking, or foreign work).", "",
        *_ceiling_lines(ceilings_by_round),
        *_other_tables(steps), *_profile_lines(profile),
        "", f"![throughput and open-loop latency]({out.with_suffix('.png').name})", "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    out.with_suffix(".json").write_text(json.dumps({"valid": verdict.valid, "verdict": verdict.__dict__,
                                                    "context": context, "ceilings": ceilings_by_round,
                                                    "steps": steps, "profile": profile}, indent=1))
    _plot(out.with_suffix(".png"), groups, steps)
    print("\n".join(lines))
