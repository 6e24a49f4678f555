"""``liveroom doctor``: whether the installed python-engineio, python-socketio and aiortc are the
ones the server's fenced seams (``liveroom/sockets/_engineio/``, ``liveroom/media/_aiortc/``)
were read against, and still have the private names and shapes those seams use.

The checks read installed metadata, attributes, signatures and compiled code, never source
files, so they run on an install without ``.py`` sources; the test suite runs the same checks
and compares the copied library code against the library's source besides.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

__all__ = ["Check", "all_checks", "run_doctor"]


@dataclass(frozen=True, slots=True)
class Check:
    """One named check: ``run()`` returns when it holds and raises (saying why) when not."""

    name: str
    run: Callable[[], None]


def all_checks() -> list[Check]:
    """Every check of both seams, Socket.IO's first."""
    # Imported here: the seams import ``Check`` from this module.
    from .media._aiortc import checks as aiortc_checks
    from .sockets._engineio import checks as socketio_checks

    return [*socketio_checks(), *aiortc_checks()]


def run_doctor(out: TextIO | None = None) -> int:
    """Print each check to ``out`` (standard output by default) with ``ok``, or ``FAIL`` and
    the reason; 0 when all hold, else 1."""
    out = sys.stdout if out is None else out
    failed = 0
    for check in all_checks():
        try:
            check.run()
        except Exception as exc:
            failed += 1
            print(f"FAIL  {check.name}: {exc}", file=out)
        else:
            print(f"ok    {check.name}", file=out)
    if failed:
        print(f"{failed} check(s) failed: this install is not the one the server was checked "
              "against (see DEVELOPERS.md, Dependencies)", file=out)
        return 1
    print("every check holds", file=out)
    return 0
