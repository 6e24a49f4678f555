"""``liveroom serve`` in a child process, started and stopped as an operator would.

One launcher for the benchmarks, the soak and the tests that need a real server process. It runs
the ``liveroom`` command line (the console script beside this interpreter, else
``python -m liveroom``) and imports nothing of the server.

``ServerProcess(data_dir, args=[...], env={...})``, used as ``async with``:

- starts ``liveroom serve --port PORT --data-dir DATA_DIR ARGS`` on a free loopback port (or the
  given one), in a session of its own so that a kill reaches its whole process group;
- gives it this process's environment without any ``LIVEROOM_*`` variable, plus ``env``: the
  server sees exactly the settings the caller chose, whatever the shell exported;
- writes its stdout and stderr, unbuffered, to ``log_path`` (default
  ``DATA_DIR/serve-PORT.log``): a file, not a pipe, so nobody has to drain it, and a killed
  worker's children holding it open delay nothing;
- is ready once the server has printed ``serving on`` and ``/healthz`` answers 200 (the workers
  of ``--workers N`` bind a moment after the supervisor prints); ``start`` raises
  ``ServerStartFailed`` (exit code and the end of the log) when it exits first or is not ready
  within ``ready_timeout_s``, and then leaves nothing running;
- ``stop(sig)`` sends ``sig`` (SIGTERM by default), waits up to ``timeout_s`` for the exit, then
  kills the process group; it answers the exit code (negative: the signal that ended it) and may
  be called again. Leaving the ``async with`` block calls ``stop()``.

``token(role, name)`` signs a token with ``liveroom token`` for the server's data directory and
environment (so with its secret). ``children()`` lists the processes below the server (embedded
redis-server, workers, the orders hand-off consumer ``lr-handoff``) with their names and command
lines (``loadtests._procstats``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import aiohttp

from . import _procstats
from ._procstats import ProcessInfo
from .exceptions import LoadTestError

__all__ = ["LOAD_TEST_ENV", "ServerProcess", "ServerStartFailed", "free_port",
           "liveroom_command"]

# What a server under a load test needs: one-time codes echoed (so buyers can be minted) and the
# load generator's address exempt from the per-address limits (docs/loadtesting.md).
LOAD_TEST_ENV = {"LIVEROOM_OTP_ECHO": "1", "LIVEROOM_UNLIMITED_ADDRESSES": "127.0.0.0/8,::1"}


class ServerStartFailed(LoadTestError):
    """``liveroom serve`` exited, or did not become ready, before it served."""

    code = "server_start_failed"
    http_status = 502

    def __init__(self, reason: str, exit_code: int | None, log_tail: str) -> None:
        super().__init__(f"liveroom serve {reason}:\n{log_tail}")
        self.reason = reason
        self.exit_code = exit_code
        self.log_tail = log_tail


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def liveroom_command() -> list[str]:
    """The ``liveroom`` command line of this interpreter's installation."""
    beside = Path(sys.executable).parent / "liveroom"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "liveroom"]


def server_environment(env: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without ``LIVEROOM_*``, plus ``env``, output unbuffered."""
    chosen = {k: v for k, v in os.environ.items() if not k.startswith("LIVEROOM_")}
    chosen["PYTHONUNBUFFERED"] = "1"
    chosen.update(env)
    return chosen


class ServerProcess:
    """A ``liveroom serve`` child process (see the module docstring)."""

    def __init__(self, data_dir: Path, *, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, port: int | None = None,
                 log_path: Path | None = None, ready_timeout_s: float = 60.0) -> None:
        self.data_dir = data_dir
        self.port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = list(args)
        self.env = server_environment(env or {})
        self.log_path = log_path or data_dir / f"serve-{self.port}.log"
        self.ready_timeout_s = ready_timeout_s
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the server has not been started")
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """None while the server runs (or before it started); its exit code after."""
        return None if self._process is None else self._process.poll()

    def output(self) -> str:
        """Everything the server has written to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def children(self, *, recursive: bool = True) -> list[ProcessInfo]:
        """The server's child processes (and theirs, unless ``recursive`` is false) that are
        still there."""
        if self._process is None:
            return []
        pids = (_procstats.descendants(self.pid) if recursive
                else _procstats.children(self.pid))
        found = [_procstats.info(pid) for pid in pids]
        return [each for each in found if each is not None]

    async def token(self, role: str, name: str) -> str:
        """A token for a new user of ``role`` named ``name``, from ``liveroom token``."""
        job = await asyncio.create_subprocess_exec(
            *liveroom_command(), "token", "--role", role, "--name", name,
            "--data-dir", str(self.data_dir), env=self.env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(job.communicate(), 60)
        if job.returncode != 0 or not out.strip():
            raise LoadTestError(f"liveroom token exited with {job.returncode}: "
                                f"{err.decode(errors='replace').strip()[-500:]}")
        return out.decode().strip().splitlines()[-1]

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            return subprocess.Popen(
                [*liveroom_command(), "serve", "--port", str(self.port),
                 "--data-dir", str(self.data_dir), *self.args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, start_new_session=True)

    async def start(self) -> None:
        """Start the server and wait until it serves (see the module docstring)."""
        if self._process is not None:
            raise RuntimeError("a ServerProcess starts once")
        self._process = self._spawn()
        try:
            await self._until_ready()
        except BaseException:
            self._kill_group()
            await asyncio.to_thread(self._process.wait)
            raise

    async def _until_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            while time.monotonic() < deadline:
                code = self.returncode
                if code is not None:
                    raise ServerStartFailed(f"exited with {code}", code, self.log_tail())
                if "serving on" in self.output():
                    with contextlib.suppress(aiohttp.ClientError, OSError):
                        async with http.get(self.url + "/healthz") as response:
                            if response.status == 200:
                                return
                await asyncio.sleep(0.05)
        raise ServerStartFailed(f"was not ready within {self.ready_timeout_s} s", None,
                                self.log_tail())

    async def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int | None:
        """Send ``sig``, wait up to ``timeout_s``, then kill the process group; the exit code
        (None if the server was never started)."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                return await asyncio.to_thread(process.wait, timeout_s)
            except subprocess.TimeoutExpired:
                self._kill_group()
        return await asyncio.to_thread(process.wait)

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # its own session: the server and its children

    async def __aenter__(self) -> ServerProcess:
        await self.start()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.stop()
