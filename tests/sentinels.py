"""A throwaway Redis primary, its replica and three sentinels (real ``redis-server`` processes on
free ports, in a temp dir), for the failover tests. The sentinels are ``redis-server --sentinel``
(what Debian's ``redis-sentinel`` package runs), with small timeouts so a failover takes seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from liveroom.redis_server import EmbeddedRedis

SERVICE = "liveroom"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 10_000


@dataclass
class SentinelProcess(EmbeddedRedis):
    """``redis-server sentinel.conf --sentinel`` watching ``primary_port``."""

    primary_port: int = 0

    def _args(self, port: int) -> list[str]:
        conf = self.data_dir / "sentinel.conf"
        # The sentinel rewrites its file (it records the replicas and the other sentinels).
        conf.write_text(
            f"sentinel monitor {SERVICE} {self.host} {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        return [str(conf), "--sentinel", "--bind", self.host, "--port", str(port),
                "--dir", str(self.data_dir.resolve()), "--daemonize", "no",
                "--logfile", "sentinel.log"]


@dataclass
class SentinelGroup:
    root: Path
    primary: EmbeddedRedis = field(init=False)
    replica: EmbeddedRedis = field(init=False)
    sentinels: list[SentinelProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    async def start(self) -> None:
        # A replica's first copy at once, not after the default 5 s wait for more replicas.
        self.primary = EmbeddedRedis(data_dir=self.root / "primary", persist=False,
                                     extra_args=("--repl-diskless-sync-delay", "0"))
        await self.primary.start()
        self.replica = EmbeddedRedis(
            data_dir=self.root / "replica", persist=False,
            extra_args=("--replicaof", "127.0.0.1", str(self.primary.port)))
        await self.replica.start()
        for index in range(3):
            sentinel = SentinelProcess(data_dir=self.root / f"sentinel{index}", persist=False,
                                       primary_port=self.primary.port)
            await sentinel.start()
            self.sentinels.append(sentinel)
        await self.wait_until_watched()

    async def wait_until_watched(self, timeout_s: float = 60.0) -> None:
        """Until the replica is in sync and every sentinel knows it and the other two: only
        then can the sentinels agree on a failover."""
        deadline = time.monotonic() + timeout_s
        while True:
            if await self._watched():
                return
            if time.monotonic() > deadline:
                raise AssertionError("the sentinels did not see the replica and each other")
            await asyncio.sleep(0.2)

    async def _watched(self) -> bool:
        async with aioredis.Redis(port=self.primary.port) as primary:
            info = await primary.info("replication")
            if info.get("slave0", {}).get("state") != "online":
                return False
        for sentinel in self.sentinels:
            async with aioredis.Redis(port=sentinel.port) as client:
                master = await client.sentinel_master(SERVICE)
                replicas = await client.sentinel_slaves(SERVICE)
            assert isinstance(master, dict)
            if int(master.get("num-other-sentinels", 0)) < 2 or not replicas:
                return False
            if any(r["is_sdown"] or r["is_odown"] for r in replicas):
                return False
        return True

    async def primary_port(self) -> int | None:
        """The primary's port as a majority of sentinels say, None while they disagree."""
        ports: list[int] = []
        for sentinel in self.sentinels:
            with contextlib.suppress(Exception):
                async with aioredis.Redis(port=sentinel.port) as client:
                    address = await client.sentinel_get_master_addr_by_name(SERVICE)
                    if isinstance(address, tuple):
                        ports.append(int(address[1]))
        for port in set(ports):
            if ports.count(port) >= 2:
                return port
        return None

    async def stop(self) -> None:
        for process in [*self.sentinels, self.replica, self.primary]:
            with contextlib.suppress(Exception):
                await process.stop(grace_s=5.0)
