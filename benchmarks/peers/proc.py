"""A process tree's CPU time and threads, read from Linux's /proc (no psutil in the serving venv)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

_PROC = Path("/proc")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """Fields 3.. of /proc/<pid>/stat (state onwards): the command name in parentheses may hold spaces."""
    text = (_PROC / str(pid) / "stat").read_text()
    return text[text.rindex(")") + 2:].split()


def process_tree(root: int) -> list[int]:
    """root and every live descendant, root first."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
        children.setdefault(parent, []).append(int(entry.name))
    tree, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        tree.append(pid)
        queue.extend(sorted(children.get(pid, [])))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one live process, every thread included; 0.0 once it is gone."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (stat fields 14, 15)


def tree_cpu_seconds(root: int) -> float:
    return sum(cpu_seconds(pid) for pid in process_tree(root))


def thread_names(pid: int) -> Counter[str]:
    """How many threads of each name the process runs (names as the kernel keeps them, 15 characters)."""
    names: Counter[str] = Counter()
    for task in (_PROC / str(pid) / "task").iterdir():
        try:
            names[(task / "comm").read_text().strip()] += 1
        except OSError:
            continue
    return names


def command_line(pid: int) -> str:
    try:
        return (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"
