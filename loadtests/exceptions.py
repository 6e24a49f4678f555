"""Errors of the load-testing toolkit.

::

    LoadTestError                 root; ``code`` and ``http_status`` like every package's errors
    ├── ScenarioError             the command line or scenario asks for something impossible
    ├── ServerRefused             the server answered a setup call with an error
    ├── ProtocolViolation         the server sent something the Socket.IO v5 framing does not allow
    └── ConnectFailed             a buyer could not open its Socket.IO session
"""

from __future__ import annotations

from typing import Any


class LoadTestError(Exception):
    code = "load_test_error"
    http_status = 500


class ScenarioError(LoadTestError):
    code = "invalid_scenario"
    http_status = 400

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class ServerRefused(LoadTestError):
    """A setup request (session, room, product, sale, audit read) did not succeed."""

    code = "server_refused"
    http_status = 502

    def __init__(self, what: str, status: int, body: Any) -> None:
        super().__init__(f"{what} failed with HTTP {status}: {body!r}")
        self.what = what
        self.status = status
        self.body = body


class ProtocolViolation(LoadTestError):
    code = "protocol_violation"
    http_status = 502

    def __init__(self, frame: str, problem: str) -> None:
        super().__init__(f"{problem}: {frame[:200]!r}")
        self.frame = frame
        self.problem = problem


class ConnectFailed(LoadTestError):
    """The websocket could not be opened, or the Socket.IO connect was refused."""

    code = "connect_failed"
    http_status = 502

    def __init__(self, reason: str, server_code: str | None = None) -> None:
        super().__init__(reason if server_code is None else f"{server_code}: {reason}")
        self.reason = reason
        self.server_code = server_code
