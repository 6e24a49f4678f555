"""What Linux's ``/proc`` says about a process, read from outside it.

Every reader takes a pid and answers ``None`` (or an empty list) once the process is gone: a
process may exit between being listed and being read, and callers summing over a server's
processes must not fail for it. Nothing here caches; each call reads ``/proc`` afresh.

- ``cpu_seconds``: user + system CPU the process has used (``utime + stime`` in ``stat``).
- ``rss_bytes``: its resident memory now (``resident`` pages in ``statm``).
- ``children``: the processes it started itself (``task/*/children``, every thread's);
  ``descendants``: those and theirs, depth first.
- ``info``: pid, parent, name (``comm``), command line and start time in one record;
  ``start_ticks``: the start time alone, which tells a reused pid apart from the original,
  and is ``None`` for a zombie (exited, not yet reaped) as well as for a process that is gone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcessInfo", "children", "cpu_seconds", "descendants", "info", "rss_bytes",
           "start_ticks"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    ppid: int
    name: str  # ``comm``: what the process calls itself (setproctitle names show here)
    cmdline: str  # arguments joined by spaces; empty for a zombie
    started: int  # clock ticks after boot
    state: str  # ``R``, ``S``, ``Z`` ...


def _stat(pid: int) -> tuple[str, list[str]] | None:
    """The name and the fields after it (``state`` first) of ``/proc/<pid>/stat``."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The name sits in parentheses and may itself contain spaces and parentheses.
    head, _, tail = text.rpartition(")")
    return head[head.index("(") + 1:], tail.split()


def cpu_seconds(pid: int) -> float | None:
    stat = _stat(pid)
    if stat is None:
        return None
    fields = stat[1]  # state(0) ppid(1) ... utime(11) stime(12)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int | None:
    try:
        return int((_PROC / str(pid) / "statm").read_text().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    stat = _stat(pid)
    if stat is None or stat[1][0] in ("Z", "X"):
        return None
    return int(stat[1][19])


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue  # a thread that ended meanwhile
    return found


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for child in children(pid):
        found.append(child)
        found += descendants(child)
    return found


def info(pid: int) -> ProcessInfo | None:
    stat = _stat(pid)
    if stat is None:
        return None
    name, fields = stat
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return ProcessInfo(pid=pid, ppid=int(fields[1]), name=name,
                       cmdline=raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace"),
                       started=int(fields[19]), state=fields[0])
