"""What the load commands (``spike``, ``auction``) share around their generators: starting them
(a task of this event loop when there is one, else one spawned process each), talking to them
over their channels, stopping them, and writing the report with its chart."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from ._channel import Channel, PipeChannel, queue_pair
from .exceptions import LoadTestError

__all__ = ["Generators", "write_report"]

Message = dict[str, Any]
# A generator: ``run(*args, channel)`` on this event loop, ``process_main(*args, connection)``
# in a spawned process (the child's end of a pipe).
Run = Callable[..., Coroutine[Any, Any, None]]
ProcessMain = Callable[..., None]


class Generators:
    """The generators of one run, one per share (``(process name, args)``): with one share a
    task of this event loop, else spawned processes. ``noun`` names one in errors."""

    def __init__(self, run: Run, process_main: ProcessMain,
                 shares: Sequence[tuple[str, tuple[Any, ...]]], noun: str) -> None:
        self._run = run
        self._process_main = process_main
        self._shares = list(shares)
        self._noun = noun
        self.channels: list[Channel] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._processes: list[Any] = []

    def start(self) -> None:
        if len(self._shares) == 1:
            ours, theirs = queue_pair()
            self.channels.append(ours)
            _, args = self._shares[0]
            self._tasks.append(asyncio.create_task(self._run(*args, theirs)))
            return
        context = multiprocessing.get_context("spawn")
        for name, args in self._shares:
            parent_end, child_end = context.Pipe()
            process = context.Process(target=self._process_main, args=(*args, child_end),
                                      name=name, daemon=True)
            process.start()
            child_end.close()  # so recv() ends with EOFError if the process dies
            self._processes.append(process)
            self.channels.append(PipeChannel(parent_end))

    async def gather(self, kind: str,
                     other: Callable[[Message], None] | None = None) -> list[Message]:
        """The next message of type ``kind`` from each generator, in share order. A message of
        another type before it goes to ``other``; without ``other`` it is a ``LoadTestError``."""

        async def one(channel: Channel) -> Message:
            while True:
                try:
                    message = await channel.recv()
                except EOFError:
                    raise LoadTestError(f"{self._noun} died") from None
                if message.get("type") == kind:
                    return message
                if other is None:
                    raise LoadTestError(
                        f"{self._noun} said {message.get('type')!r}, not {kind}")
                other(message)

        return list(await asyncio.gather(*(one(c) for c in self.channels)))

    async def broadcast(self, message: Message) -> None:
        await asyncio.gather(*(channel.send(message) for channel in self.channels))

    async def close(self) -> None:
        for task in self._tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for process in self._processes:
            await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.terminate()
                await asyncio.to_thread(process.join, 5)


def write_report(report: dict[str, Any], json_path: Path,
                 render: Callable[[dict[str, Any]], str], *,
                 default: Callable[[Any], Any] | None = None) -> None:
    """``report`` as JSON at ``json_path`` and its chart (``render``) beside it, same name with
    ``.html``; the report names the chart (``chart``)."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    chart = json_path.with_suffix(".html")
    report["chart"] = str(chart)
    chart.write_text(render(report))
    json_path.write_text(json.dumps(report, indent=2, default=default) + "\n")
