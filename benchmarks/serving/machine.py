"""What the machine's cores did during a measured window, and who did it, from Linux's /proc.

A benchmark figure is only as good as the core it ran on. The server's own CPU time cannot tell a
starved server from an idle one (both use little), so each window is read twice:

- per core, from /proc/stat: busy (user, nice, system, irq, softirq, steal) against the window's
  ticks. Steal counts as busy: the hypervisor gave the core to someone else. irq + softirq are the
  kernel's work for whoever caused it (loopback networking of the benchmark itself, mostly), kept
  apart and never counted as foreign;
- per process, from /proc/<pid>/stat: utime + stime (every thread) plus cutime + cstime (children
  it reaped), so a child that starts and ends inside the window is still counted. The benchmark's
  own processes are its driver's tree (servers, peers, load generators, ceilings); every other
  process is foreign and is named when it used CPU (make and the shell that started the driver
  only wait, so they never reach the naming threshold).

Foreign work on a core set is what the cores were busy with beyond the kernel's share and the
benchmark's own processes: a residual, so it also catches work /proc cannot name (another
container's processes, steal). With tick-based accounting the kernel charges irq/softirq ticks to
the interrupted process too, so the residual can understate foreign work by up to the kernel share
(5-8% of a core on loopback gRPC here), never overstate it. Own CPU is placed on a core when the
process's affinity is that one core (the benchmark pins every server and generator); an own process
allowed on several cores is subtracted from every set it may have run on, which can only hide
foreign work, never invent it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc/stat and /proc/<pid>/stat count in these


@dataclass(frozen=True)
class CoreTimes:
    """One core's cumulative ticks from a /proc/stat `cpuN` line."""

    busy: int  # user + nice + system + irq + softirq + steal (guest time is inside user already)
    idle: int  # idle + iowait
    kernel: int  # irq + softirq: interrupt work, charged to no process
    steal: int  # time a hypervisor ran something else on this virtual core

    @property
    def total(self) -> int:
        return self.busy + self.idle


@dataclass(frozen=True)
class ProcessCpu:
    """One process from /proc/<pid>/stat: its parent, name and cumulative CPU ticks."""

    pid: int
    ppid: int
    comm: str
    own_ticks: int  # utime + stime, all threads
    reaped_ticks: int  # cutime + cstime: children it has waited for

    @property
    def ticks(self) -> int:
        return self.own_ticks + self.reaped_ticks


@dataclass(frozen=True)
class Sample:
    """The machine at one instant: per-core ticks, every visible process, the benchmark's own pids."""

    at: float  # time.monotonic()
    cores: Mapping[int, CoreTimes]
    processes: Mapping[int, ProcessCpu]
    own: frozenset[int]  # the benchmark's processes: the driver's tree
    affinity: Mapping[int, frozenset[int]]  # of the own processes: where they may run
    load_average: tuple[float, float, float]


@dataclass(frozen=True)
class Offender:
    pid: int
    comm: str
    cpu_s: float


@dataclass(frozen=True)
class CoreSetAccount:
    """Seconds over one window on a set of cores; shares are of the cores' capacity unless named."""

    cores: tuple[int, ...]
    total_s: float  # capacity: window length x cores, as /proc/stat counts it
    busy_s: float
    kernel_s: float
    steal_s: float
    own_s: float  # the benchmark's processes that may only run on these cores
    foreign_s: float  # busy beyond kernel work and the benchmark's processes (never negative)

    @property
    def busy_share(self) -> float:
        return self.busy_s / self.total_s if self.total_s else 0.0

    @property
    def own_share_of_busy(self) -> float:
        """How much of the cores' busy time the benchmark's own processes account for."""
        return min(self.own_s / self.busy_s, 1.0) if self.busy_s else 0.0

    @property
    def foreign_share(self) -> float:
        return self.foreign_s / self.total_s if self.total_s else 0.0


@dataclass(frozen=True)
class Window:
    """Two samples and what happened between them."""

    before: Sample
    after: Sample
    cpu_by_pid: Mapping[int, int] = field(init=False)  # ticks each process used inside the window

    def __post_init__(self) -> None:
        object.__setattr__(self, "cpu_by_pid", cpu_in_window(self.before.processes, self.after.processes))

    @property
    def seconds(self) -> float:
        return self.after.at - self.before.at

    def own_pids(self) -> frozenset[int]:
        return self.before.own | self.after.own

    def account(self, cores: Iterable[int]) -> CoreSetAccount:
        chosen = tuple(sorted(set(cores)))
        delta = {c: _core_delta(self.before.cores[c], self.after.cores[c]) for c in chosen}
        busy = sum(d.busy for d in delta.values())
        kernel = sum(d.kernel for d in delta.values())
        inside, overlapping = self._own_ticks(set(chosen))
        foreign = max(busy - kernel - inside - overlapping, 0)
        return CoreSetAccount(chosen, sum(d.total for d in delta.values()) / CLOCK_TICKS, busy / CLOCK_TICKS,
                              kernel / CLOCK_TICKS, sum(d.steal for d in delta.values()) / CLOCK_TICKS,
                              inside / CLOCK_TICKS, foreign / CLOCK_TICKS)

    def _own_ticks(self, cores: set[int]) -> tuple[int, int]:
        """(ticks of own processes confined to `cores`, ticks of own processes that may also run elsewhere)."""
        affinity = {**self.before.affinity, **self.after.affinity}
        inside = overlapping = 0
        for pid in self.own_pids():
            allowed = affinity.get(pid, frozenset())
            ticks = self.cpu_by_pid.get(pid, 0)
            if allowed and allowed <= cores:
                inside += ticks
            elif not allowed or allowed & cores:  # unknown affinity: assume it may have run here
                overlapping += ticks
        return inside, overlapping

    def offenders(self, top: int = 5, min_cpu_s: float = 0.05) -> list[Offender]:
        """The foreign processes that used the most CPU in the window, most first."""
        own = self.own_pids()
        names = {**self.before.processes, **self.after.processes}
        found = [Offender(pid, names[pid].comm, ticks / CLOCK_TICKS) for pid, ticks in self.cpu_by_pid.items()
                 if pid not in own and ticks / CLOCK_TICKS >= min_cpu_s]
        return sorted(found, key=lambda o: (-o.cpu_s, o.pid))[:top]


def _core_delta(before: CoreTimes, after: CoreTimes) -> CoreTimes:
    return CoreTimes(after.busy - before.busy, after.idle - before.idle, after.kernel - before.kernel,
                     after.steal - before.steal)


def cpu_in_window(before: Mapping[int, ProcessCpu], after: Mapping[int, ProcessCpu]) -> dict[int, int]:
    """Ticks each live process used between two samples, its reaped children's included.

    A child that exited and was reaped in the window shows up whole in its parent's cutime/cstime,
    the part it had used before the window too; that part is taken off the parent again. A process
    born in the window counts from zero. (A pid reused inside one window would be misread, clamped
    at zero; pids wrap far more slowly than a benchmark step.)"""
    used: dict[int, int] = {}
    for pid, now in after.items():
        then = before.get(pid)
        used[pid] = now.ticks - then.ticks if then else now.ticks
    for pid, gone in before.items():
        if pid not in after and gone.ppid in used:
            used[gone.ppid] -= gone.ticks
    return {pid: max(ticks, 0) for pid, ticks in used.items()}


def parse_proc_stat(text: str) -> dict[int, CoreTimes]:
    """The per-core lines (`cpu0 ...`) of /proc/stat; the all-cores `cpu` line is left out."""
    cores = {}
    for line in text.splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in (values + ["0"] * 8)[:8])
        cores[int(name[3:])] = CoreTimes(busy=user + nice + system + irq + softirq + steal, idle=idle + iowait,
                                         kernel=irq + softirq, steal=steal)
    return cores


def parse_process_stat(text: str) -> ProcessCpu:
    """One /proc/<pid>/stat line; the name in parentheses may hold spaces and parentheses."""
    pid, rest = text.split(" ", 1)
    comm = rest[rest.index("(") + 1:rest.rindex(")")]
    fields = rest[rest.rindex(")") + 2:].split()  # fields 3.. (state onwards)
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return ProcessCpu(int(pid), int(fields[1]), comm, utime + stime, cutime + cstime)


def read_processes(proc: Path = PROC) -> dict[int, ProcessCpu]:
    found = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            found[int(entry.name)] = parse_process_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
    return found


def process_tree(processes: Mapping[int, ProcessCpu], root: int) -> frozenset[int]:
    """root and every descendant of it."""
    children: dict[int, list[int]] = {}
    for process in processes.values():
        children.setdefault(process.ppid, []).append(process.pid)
    members, queue = {root}, [root]
    while queue:
        for child in children.get(queue.pop(), []):
            if child not in members:
                members.add(child)
                queue.append(child)
    return frozenset(members)


def _affinity(pids: Iterable[int]) -> dict[int, frozenset[int]]:
    found = {}
    for pid in pids:
        try:
            found[pid] = frozenset(os.sched_getaffinity(pid))
        except OSError:
            continue
    return found


def take_sample(own_root: int, proc: Path = PROC) -> Sample:
    """The machine now; `own_root` is the benchmark's driver process."""
    at = time.monotonic()
    cores = parse_proc_stat((proc / "stat").read_text())
    processes = read_processes(proc)
    own = process_tree(processes, own_root)
    load = tuple(float(v) for v in (proc / "loadavg").read_text().split()[:3])
    return Sample(at, cores, processes, own, _affinity(own), (load[0], load[1], load[2]))


def all_cores(window: Window) -> dict[str, Any]:
    """Every core over `window`: idle share, the share of foreign work (busy beyond the kernel's and the
    benchmark's own process tree, its children included) and the processes that did it."""
    account = window.account(window.before.cores)
    return {"idle_share": 1.0 - account.busy_share, "foreign_share": account.foreign_share,
            "offenders": [f"{o.comm} ({o.cpu_s:.1f} s)" for o in window.offenders()]}
