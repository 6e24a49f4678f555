"""A throwaway PostgreSQL cluster for tests and benchmarks: Debian's ``initdb`` + ``pg_ctl`` in a
temp dir, on a free loopback port, with its unix socket in that dir (never the machine's own
server on 5432). Run as an unprivileged user when started by root, since PostgreSQL refuses to
run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PostgresLaunchError", "ThrowawayPostgres", "postgres_bin_dir"]

INSTALL_HINT = ("PostgreSQL's server programs were not found (initdb, pg_ctl). Install them "
                "(Debian: `sudo apt-get install postgresql`, or `make system-deps`).")
# The user the cluster runs as when we are root.
RUN_AS = "nobody"


class PostgresLaunchError(RuntimeError):
    """The throwaway cluster could not be started."""


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` (Debian's layout)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise PostgresLaunchError(INSTALL_HINT)
    return Path(initdb).resolve().parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ThrowawayPostgres:
    """``start()`` makes and starts a fresh cluster; ``stop()`` stops it (it can be started
    again on the same port: a database that goes away and comes back); ``destroy()`` stops it
    and removes its files."""

    user: str = "liveroom"
    port: int = 0
    root: Path | None = None
    _bin: Path = field(default_factory=postgres_bin_dir)

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _as_owner(self, *argv: str) -> list[str]:
        if os.geteuid() != 0:
            return list(argv)
        return ["runuser", "-u", RUN_AS, "--", *argv]

    def _run(self, *argv: str) -> None:
        done = subprocess.run(self._as_owner(*argv), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.root / "server.log" if self.root is not None else None
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise PostgresLaunchError(
                f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr.strip()} {tail}")

    def start(self) -> None:
        if self.root is None:
            # Not under pytest's 0700 temp root: the unprivileged user must reach it.
            self.root = Path(tempfile.mkdtemp(prefix="liveroom-pg-"))
            if os.geteuid() == 0:
                entry = pwd.getpwnam(RUN_AS)
                os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._run(str(self._bin / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                      "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
        if not self.port:
            self.port = _free_port()
        # No fsync: a throwaway cluster need not survive the machine's crash, only its own
        # (commits still reach the WAL before they are acknowledged, so a stop in immediate
        # mode, as the outage tests do, loses nothing acknowledged).
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self._bin / "pg_ctl"), "-D", str(self.data_dir), "-l",
                  str(self.root / "server.log"), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        if self.root is not None and (self.data_dir / "postmaster.pid").exists():
            self._run(str(self._bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate",
                      "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
