"""Whether a benchmark run measured what it claims: the checks, the flags, the verdict, the stamp.

Each measured window (every closed-loop, open-loop, streaming and ceiling step) carries a machine
report (machine.py): per benchmark core, the share of the window it was busy (/proc/stat), the
share of that busy time the benchmark's own processes account for, and the share foreign work
took; plus the foreign processes that used the most CPU. A step is flagged when

- it should keep its server core saturated (a pinned closed-loop or streaming step with
  SATURATING_CLIENTS or more callers, or the bare-onnxruntime ceiling; not the py-spy profile,
  which suspends the server to sample it) and a server core was less
  than BUSY_AT_SATURATION busy: the server waited for a core that something else held (or for a
  starved load generator); or
- foreign work took more than FOREIGN_SHARE_MAX of any benchmark core (of the cores as a set when
  servers and generator share them, unpinned).

One flagged step makes the run invalid. Before the run, `wait_until_quiet` samples the machine for
a few seconds and refuses to start while the 1-minute load average or /proc/stat shows other work
(it waits a while first: a load average takes a minute or two to forget a job that just ended).
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.serving.machine import CoreSetAccount, Window, take_sample

BUSY_AT_SATURATION = 0.95  # a saturated pinned server's core, busy share of the window
FOREIGN_SHARE_MAX = 0.05  # foreign work, share of any benchmark core (or of the shared set)
SATURATING_CLIENTS = 16  # closed-loop callers from which a server is expected to keep its core busy
LOAD_PER_CORE_MAX = 0.5  # before the run: 1-minute load average per core of the machine
SATURATED_KINDS = ("closed", "streaming")
# The empty-RPC floor is not among them: the generator spends about as much CPU per empty call as
# the server, so its core, not the server's, limits that step; its figure is CPU per request.
# Nor is the py-spy profile: py-spy suspends the server to read each sample (its blocking mode), so
# the server's core idles by design while profiled; that step reports where CPU goes, not a rate.
# It is still checked for foreign work.


def _core_report(account: CoreSetAccount, role: str) -> dict[str, Any]:
    return {"cores": list(account.cores), "role": role, "busy_share": account.busy_share,
            "own_share_of_busy": account.own_share_of_busy, "foreign_share": account.foreign_share,
            "kernel_share": account.kernel_s / account.total_s if account.total_s else 0.0,
            "steal_share": account.steal_s / account.total_s if account.total_s else 0.0}


def window_report(window: Window, server_cores: Iterable[int], generator_cores: Iterable[int],
                  pinned: bool = True) -> dict[str, Any]:
    """What one measured window's machine report holds (JSON-ready): per core when the servers and
    the generator are pinned to disjoint cores, else over their cores as one set."""
    servers, generators = sorted(set(server_cores)), sorted(set(generator_cores) - set(server_cores))
    if pinned:
        cores = [_core_report(window.account([c]), "server") for c in servers]
        cores += [_core_report(window.account([c]), "generator") for c in generators]
    else:
        cores = [_core_report(window.account(servers + generators), "shared")]
    return {"seconds": window.seconds, "pinned": pinned, "cores": cores,
            "load_average": list(window.after.load_average),
            "offenders": [asdict(o) for o in window.offenders()]}


def saturated(step: dict[str, Any]) -> bool:
    if step["kind"] == "ceiling":
        return True
    return step["kind"] in SATURATED_KINDS and step.get("clients", 0) >= SATURATING_CLIENTS


def step_flags(step: dict[str, Any]) -> list[str]:
    """Why this step's figures cannot be trusted (empty: they can)."""
    machine = step.get("machine")
    if not machine:
        return ["no machine report (the step's cores were not read)"]
    flags = []
    for core in machine["cores"]:
        where = "core" + "s" * (len(core["cores"]) > 1) + " " + ",".join(map(str, core["cores"]))
        if core["role"] == "server" and machine["pinned"] and saturated(step) \
                and core["busy_share"] < BUSY_AT_SATURATION:
            flags.append(f"server {where} busy {core['busy_share']:.2f} < {BUSY_AT_SATURATION} at saturation")
        if core["foreign_share"] > FOREIGN_SHARE_MAX:
            flags.append(f"foreign work took {core['foreign_share']:.0%} of {core['role']} {where}")
    return flags


def step_label(step: dict[str, Any]) -> str:
    parts = [f"round {step['round']}" if "round" in step else "", step["kind"], step.get("server", ""),
             step.get("mix", ""), step.get("api", ""),
             f"{step['clients']} clients" if "clients" in step else "",
             f"{step['rate']} req/s offered" if "rate" in step else ""]
    return ", ".join(p for p in parts if p and p != "-")


@dataclass
class Verdict:
    valid: bool
    reasons: list[str] = field(default_factory=list)
    offenders: list[dict[str, Any]] = field(default_factory=list)  # comm, pid, cpu_s, windows: in flagged windows
    steps_checked: int = 0
    steps_flagged: int = 0


def verdict(steps: list[dict[str, Any]], gate: dict[str, Any]) -> Verdict:
    """The run's verdict: the gate's reasons (a forced start), then every flagged step's."""
    reasons = [f"started on a busy machine (--force): {r}" for r in gate.get("reasons", [])]
    flagged = [gate] if reasons else []
    for step in steps:
        flags = step_flags(step)
        if flags:
            flagged.append(step)
        reasons += [f"{step_label(step)}: {flag}" for flag in flags]
    return Verdict(not reasons, reasons, _offenders(flagged), len(steps), len(flagged) - bool(gate.get("reasons")))


def _offenders(windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cpu: collections.Counter[tuple[str, int]] = collections.Counter()
    seen: collections.Counter[tuple[str, int]] = collections.Counter()
    for window in windows:
        for o in (window.get("machine") or {}).get("offenders", []) + window.get("offenders", []):
            cpu[(o["comm"], o["pid"])] += o["cpu_s"]
            seen[(o["comm"], o["pid"])] += 1
    return [{"comm": comm, "pid": pid, "cpu_s": seconds, "windows": seen[(comm, pid)]}
            for (comm, pid), seconds in cpu.most_common(8)]


def _offender_text(offenders: list[dict[str, Any]]) -> str:
    return "; ".join(f"`{o['comm']}` (pid {o['pid']}) {o['cpu_s']:.1f} s"
                     + (f" over {o['windows']} windows" if o.get("windows", 1) > 1 else "") for o in offenders)


def stamp(result: Verdict, shown: int = 12, command: str = "make bench-serving") -> list[str]:
    """The lines an invalid report starts with (none for a valid one); `command` is what exited non-zero."""
    if result.valid:
        return []
    lines = ["> **INVALID: the machine was not quiet during this run; no figure below may be quoted.**",
             f"> {result.steps_flagged} of {result.steps_checked} measured steps were flagged"
             f" (`{command}` exited non-zero). Reasons:", ">"]
    lines += [f"> - {reason}" for reason in result.reasons[:shown]]
    if len(result.reasons) > shown:
        lines.append(f"> - ... and {len(result.reasons) - shown} more (the .json beside this file has every "
                     "step's machine report)")
    lines += [">", "> Foreign CPU users named in /proc: " + (_offender_text(result.offenders) or
              "none visible (the foreign work is outside this container's /proc: another container, or steal)"),
              ""]
    return lines


def quiet_reasons(window: Window, cores: Iterable[int], cpu_count: int) -> list[str]:
    """Why the machine is not quiet enough to start a benchmark on `cores` (empty: it is)."""
    reasons = []
    load = window.after.load_average[0]
    if load > LOAD_PER_CORE_MAX * cpu_count:
        reasons.append(f"1-minute load average {load:.2f} > {LOAD_PER_CORE_MAX} x {cpu_count} cores")
    checked = [window.account([c]) for c in sorted(set(cores))] + [window.account(window.after.cores)]
    for account in checked:
        if account.foreign_share > FOREIGN_SHARE_MAX:
            where = "all cores" if len(account.cores) > 1 else f"core {account.cores[0]}"
            reasons.append(f"foreign work took {account.foreign_share:.0%} of {where} for {window.seconds:.0f} s")
    return reasons


def wait_until_quiet(cores: Iterable[int], sample_s: float = 5.0, wait_s: float = 120.0) -> dict[str, Any]:
    """Samples the machine for `sample_s` at a time until it is quiet or `wait_s` has passed.
    Returns the gate's record: quiet, reasons (of the last sample), offenders, load average, waited_s."""
    started, cores = time.monotonic(), sorted(set(cores))
    while True:
        before = take_sample(os.getpid())
        time.sleep(sample_s)
        window = Window(before, take_sample(os.getpid()))
        reasons = quiet_reasons(window, cores, os.cpu_count() or 1)
        record = {"quiet": not reasons, "reasons": reasons, "load_average": list(window.after.load_average),
                  "offenders": [asdict(o) for o in window.offenders()], "waited_s": time.monotonic() - started}
        if not reasons or time.monotonic() - started + sample_s > wait_s:
            return record
        print(f"waiting for a quiet machine: {'; '.join(reasons)}", flush=True)
        time.sleep(sample_s)
