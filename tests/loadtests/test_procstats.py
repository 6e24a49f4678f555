"""The /proc reader the load tools, benchmarks and tests share: what it says about a live child,
and that a process which has gone answers None instead of failing the caller."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from loadtests import _procstats as procstats

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _until(check: Callable[[], object], what: str) -> None:
    for _ in range(400):
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(what)


def test_a_child_and_its_grandchild_are_seen_until_they_exit() -> None:
    # A shell that starts a sleeper and waits for it: a child with a child of its own.
    shell = subprocess.Popen(["sh", "-c", f"{shlex.join(SLEEPER)}; exit 0"])
    grandchild = None
    try:
        # The shell forks, then the child execs the sleeper: on a busy machine the child can be
        # seen between the two, still a copy of the shell.
        _until(lambda: [c for c in procstats.children(shell.pid)
                        if (child := procstats.info(c)) and child.cmdline == " ".join(SLEEPER)],
               "the shell starts the sleeper")
        assert shell.pid in procstats.children(os.getpid())
        [grandchild] = procstats.children(shell.pid)
        assert procstats.descendants(shell.pid) == [grandchild]
        assert {shell.pid, grandchild} <= set(procstats.descendants(os.getpid()))

        seen = procstats.info(grandchild)
        assert seen is not None
        assert (seen.pid, seen.ppid) == (grandchild, shell.pid)
        assert seen.cmdline == " ".join(SLEEPER)
        assert seen.name == os.path.basename(sys.executable)[:15]
        assert procstats.start_ticks(grandchild) == seen.started
        # Read just after exec, the interpreter may not be loaded yet: its memory grows.
        _until(lambda: (procstats.rss_bytes(grandchild) or 0) > 1_000_000,
               "the sleeper's resident memory is read")
        assert procstats.cpu_seconds(grandchild) is not None

        shell.kill()
        _until(lambda: procstats.start_ticks(shell.pid) is None,
                     "a killed process that is not reaped yet counts as exited")
        zombie = procstats.info(shell.pid)
        assert zombie is not None, "a zombie is listed until reaped"
        assert zombie.state == "Z"
        shell.wait()
        assert procstats.info(shell.pid) is None
        assert procstats.cpu_seconds(shell.pid) is None
        assert procstats.rss_bytes(shell.pid) is None
        assert procstats.start_ticks(shell.pid) is None
        assert procstats.children(shell.pid) == []
        assert procstats.descendants(shell.pid) == []
    finally:
        shell.kill()
        shell.wait()
        if grandchild is not None:
            os.kill(grandchild, signal.SIGKILL)


def test_this_process_uses_cpu_and_memory() -> None:
    me = os.getpid()
    before = procstats.cpu_seconds(me)
    sum(i * i for i in range(3_000_000))
    after = procstats.cpu_seconds(me)
    assert before is not None
    assert after is not None
    assert after > before
    assert (procstats.rss_bytes(me) or 0) > 10_000_000
