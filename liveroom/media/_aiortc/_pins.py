"""The aiortc version this subpackage was read against.

Checking it reads ``aiortc.__version__`` and nothing else, so it is cheap enough to run whenever
a relay is built and works on an install without ``.py`` sources.
"""

from __future__ import annotations

import aiortc

from ..exceptions import AiortcIncompatible

__all__ = ["SUPPORTED_AIORTC_VERSIONS", "check_aiortc_version", "installed_version"]

SUPPORTED_AIORTC_VERSIONS = frozenset({"1.16.0"})


def installed_version() -> str:
    return str(aiortc.__version__)


def check_aiortc_version() -> None:
    """Raise ``AiortcIncompatible`` unless the installed aiortc is a pinned one."""
    version = installed_version()
    if version not in SUPPORTED_AIORTC_VERSIONS:
        raise AiortcIncompatible(
            version,
            f"supported versions are {sorted(SUPPORTED_AIORTC_VERSIONS)}; re-read "
            "liveroom/media/_aiortc/ (its __init__ lists what it relies on) against the new "
            "sources first",
        )
