"""The ``liveroom`` command: parses flags and calls ``run_*``; nothing else lives here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .settings import Settings, SettingsError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liveroom", description="Live-stream commerce rooms")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--redis-url", help="use this Redis instead of an embedded redis-server")
    serve.add_argument("--data-dir", type=Path, help="data directory (default ./var)")
    serve.add_argument("--database-url",
                       help="keep orders and certificates in this PostgreSQL "
                            "(postgresql://USER@HOST:PORT/DATABASE) instead of SQLite files "
                            "in the data dir")
    serve.add_argument("--demo", action="store_true", default=None,
                       help="seed a demo anchor, room and products")
    serve.add_argument("--workers", type=int, help="number of processes (default 1)")
    serve.add_argument("--hls-edges", type=int,
                       help="also start this many LL-HLS edges (liveroom hls-edge) on "
                            "--hls-port, for the cache's /hls/ (default 0)")
    serve.add_argument("--hls-port", type=int, help="the edges' port (default --port + 1)")
    serve.add_argument("--log-level", help="debug, info, warning (default info)")

    token = sub.add_parser("token", help="print a signed token for any role")
    token.add_argument("--role", required=True, choices=["viewer", "anchor", "inspector", "admin"])
    token.add_argument("--name", required=True)
    token.add_argument("--id", help="user id to reuse (default: a new one)")
    token.add_argument("--phone", help="a verified buyer: the account of this phone (+E.164)")
    token.add_argument("--data-dir", type=Path, help="data directory holding the secret")
    token.add_argument("--ttl-s", type=int, help="lifetime in seconds (default 7 days)")

    edge = sub.add_parser("hls-edge", help="answer LL-HLS reads only (/hls/), off the servers' "
                                           "event loops; put it behind the cache")
    edge.add_argument("--host", help="bind address (default 127.0.0.1)")
    edge.add_argument("--port", type=int, help="port (default 8080)")
    edge.add_argument("--redis-url", required=True, help="the Redis the servers use")
    edge.add_argument("--log-level", help="debug, info, warning (default info)")

    sub.add_parser("doctor", help="check the installed python-engineio, python-socketio and "
                                  "aiortc against the internals the server relies on")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "doctor":
        from .doctor import run_doctor

        return run_doctor()
    try:
        if args.command == "serve":
            settings = Settings.from_env(
                host=args.host, port=args.port, redis_url=args.redis_url,
                database_url=args.database_url,
                data_dir=args.data_dir, demo=args.demo, workers=args.workers,
                hls_edges=args.hls_edges, hls_port=args.hls_port, log_level=args.log_level,
            )
            from .server import run_server

            return run_server(settings)
        if args.command == "hls-edge":
            settings = Settings.from_env(host=args.host, port=args.port,
                                         redis_url=args.redis_url, log_level=args.log_level)
            from .hls_edge import run_hls_edge

            return run_hls_edge(settings)
        settings = Settings.from_env(data_dir=args.data_dir)
        from .tokens import run_token

        return run_token(settings, role=args.role, name=args.name, user_id=args.id,
                         ttl_s=args.ttl_s, phone=args.phone)
    except SettingsError as exc:
        print(f"liveroom: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
