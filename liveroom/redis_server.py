"""An embedded ``redis-server`` child: started on a free loopback port, stopped with its owner.

``liveroom serve`` uses it when no Redis URL is configured, and the test suite uses the same
launcher for its throwaway servers, so what the tests exercise is what users run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import shutil
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EmbeddedRedis",
    "RedisLaunchError",
    "RedisServerNotFound",
    "die_with_parent",
    "free_port",
    "set_process_name",
]

INSTALL_HINT = (
    "redis-server was not found on PATH. Install it (Debian/Ubuntu: "
    "`sudo apt-get install redis-server`) or point liveroom at a running Redis with "
    "--redis-url redis://HOST:PORT (or LIVEROOM_REDIS_URL)."
)


class RedisLaunchError(RuntimeError):
    """The embedded redis-server could not be started."""


class RedisServerNotFound(RedisLaunchError):
    def __init__(self, binary: str) -> None:
        super().__init__(INSTALL_HINT if binary == "redis-server" else f"{binary}: not found")
        self.binary = binary


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def set_process_name(name: str) -> None:
    """Name this process in ps/top (Linux comm, 15 characters), so operators and the
    benchmarks can tell the server's processes apart."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(15, name.encode()[:15], 0, 0, 0)


def die_with_parent() -> None:
    # Linux only: the child gets SIGTERM if the server process dies, even by SIGKILL,
    # so an embedded Redis is never orphaned.
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class EmbeddedRedis:
    data_dir: Path
    persist: bool = True
    binary: str = "redis-server"
    host: str = "127.0.0.1"
    port: int = 0
    extra_args: tuple[str, ...] = ()
    _process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _args(self, port: int) -> list[str]:
        args = [
            "--bind", self.host,
            "--port", str(port),
            "--dir", str(self.data_dir.resolve()),
            "--daemonize", "no",
            "--save", "",
            "--protected-mode", "yes",
            "--logfile", "redis.log" if self.persist else "",
        ]
        if self.persist:
            # An acknowledged reservation must survive even a crash of Redis: fsync before every
            # reply. Redis groups the fsync per event-loop turn, and a whole batch of buys is one
            # script call, so a burst pays one fsync per batch, not per buy.
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return args + list(self.extra_args)

    async def start(self, attempts: int = 5) -> None:
        path = shutil.which(self.binary)
        if path is None:
            raise RedisServerNotFound(self.binary)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(attempts):
            port = self.port or free_port(self.host)
            process = await asyncio.create_subprocess_exec(
                path,
                *self._args(port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                preexec_fn=die_with_parent,
            )
            if await self._wait_ready(process, port):
                self._process = process
                self.port = port
                return
            last_error = await self._reap(process)
        raise RedisLaunchError(f"redis-server did not start: {last_error or 'no output'}")

    async def _wait_ready(self, process: asyncio.subprocess.Process, port: int) -> bool:
        for _ in range(200):
            if process.returncode is not None:
                return False
            try:
                reader, writer = await asyncio.open_connection(self.host, port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            try:
                writer.write(b"PING\r\n")
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), 1.0)
            except (OSError, TimeoutError):
                line = b""
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            if line.startswith(b"+PONG"):
                return True
            # -LOADING: the AOF is still being replayed.
            await asyncio.sleep(0.02)
        return False

    async def _reap(self, process: asyncio.subprocess.Process) -> str:
        if process.returncode is None:
            process.kill()
        stderr = b""
        if process.stderr is not None:
            with contextlib.suppress(Exception):
                stderr = await asyncio.wait_for(process.stderr.read(), 1.0)
        await process.wait()
        return stderr.decode(errors="replace").strip()[-500:]

    async def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM: Redis flushes the AOF and exits; SIGKILL only if it hangs."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace_s)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def kill(self) -> None:
        """Crash the server (SIGKILL), as in a fault test."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    async def __aenter__(self) -> EmbeddedRedis:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
