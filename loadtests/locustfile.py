"""Locust version of the spike scenario, for teams that already run Locust.

Only Locust imports this file (``locust -f loadtests/locustfile.py``); nothing else in the
project does, so Locust is not a runtime dependency (the ``test`` extra has it, for
``tests/loadtests/test_locust.py``). Elsewhere: ``pip install locust websockets``.

The master (or the single local process) plays the anchor when the test starts: it creates a
room, a product and a flash sale, then tells every worker the sale over Locust's message
channel. Each simulated user mints a guest session, opens a Socket.IO websocket, joins the room
and buys; with ``--lt-checkout FRACTION`` that share of its reservations is checked out at once
(cash on delivery). Answers are reported to Locust as requests named ``buy:<status>`` and
``checkout:<status>``.

Single machine::

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8080 --headless -u 500 -r 100 \
        --run-time 60s --lt-anchor-token TOKEN --lt-admin-token ADMIN_TOKEN --lt-stock 50
        --lt-per-user-limit 2

Several machines: the same command with ``--master --expect-workers 4`` on one, and
``locust -f loadtests/locustfile.py --worker --master-host MASTER`` on each worker machine.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import time
import urllib.request
from typing import Any

from locust import User, between, events, task
from websockets.sync.client import ClientConnection, connect

SALE_MESSAGE = "loadtests_sale"
SALE_WAIT_S = 30.0  # how long a user waits for the master to open the sale
_scenario: dict[str, Any] = {}
# Numbers this process's users go by (their buyer accounts' prefixes).
_user_numbers = itertools.count()


def _http(host: str, method: str, path: str, token: str | None = None,
          body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(host.rstrip("/") + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _arguments(parser: Any) -> None:
    parser.add_argument("--lt-anchor-token", default="", help="anchor token (liveroom token)")
    parser.add_argument("--lt-admin-token", default="",
                        help="admin token: mints each user's buyer account (the server must run "
                             "with LIVEROOM_OTP_ECHO=1)")
    parser.add_argument("--lt-stock", type=int, default=50)
    parser.add_argument("--lt-per-user-limit", type=int, default=1)
    parser.add_argument("--lt-checkout", type=float, default=0.0,
                        help="fraction (0..1) of reservations checked out at once")


def _remember_sale(environment: Any, msg: Any, **_: Any) -> None:
    _scenario.update(msg.data)


def _on_init(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if runner is not None and hasattr(runner, "register_message"):
        runner.register_message(SALE_MESSAGE, _remember_sale)


def _open_sale(environment: Any, **_: Any) -> None:
    from locust.runners import WorkerRunner

    if isinstance(environment.runner, WorkerRunner):
        return  # the master sets the scene
    options, host = environment.parsed_options, environment.host
    token = options.lt_anchor_token
    room = _http(host, "POST", "/api/rooms", token, {"title": "locust load test"})
    product = _http(host, "POST", "/api/products", token,
                    {"title": "locust item", "category": "loadtest", "price_cents": 9900})
    sale = _http(host, "POST", f"/api/rooms/{room['id']}/sales", token, {
        "product_id": product["id"], "stock": options.lt_stock, "price_cents": 9900,
        "per_user_limit": options.lt_per_user_limit, "starts_in_s": 0, "duration_s": 3600,
        "hold_s": 3600})
    _scenario.update({"room": room["id"], "sale": sale["id"]})
    if hasattr(environment.runner, "send_message"):
        environment.runner.send_message(SALE_MESSAGE, dict(_scenario))


class SocketIOBuyer(User):
    """A viewer who joins the room and keeps trying to buy, one unit at a time."""

    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        self.stack = contextlib.ExitStack()
        deadline = time.monotonic() + SALE_WAIT_S
        while "sale" not in _scenario:  # workers hear about the sale from the master
            if time.monotonic() > deadline:
                raise RuntimeError("no sale: the anchor could not open one (see the log above)")
            time.sleep(0.05)
        host = self.host
        if not host:
            raise RuntimeError("no server: pass --host http://SERVER:PORT")
        # A buyer account per simulated person, minted by the admin (the server echoes codes).
        # This person's own number: their account's prefix and their door.
        self.number = os.getpid() * 100_000 + next(_user_numbers)
        minted = _http(host, "POST", "/api/accounts/test-buyers",
                       self.environment.parsed_options.lt_admin_token,
                       {"count": 1, "prefix": f"lc{self.number}"})
        session = minted["buyers"][0]
        url = host.replace("http", "ws", 1).rstrip("/")
        self.ws: ClientConnection = self.stack.enter_context(
            connect(url + "/socket.io/?EIO=4&transport=websocket", compression=None))
        self.ids = itertools.count()
        self.attempt = 0
        self.ws.recv()  # Engine.IO open packet
        self.ws.send("40" + json.dumps({"token": session["token"]}))
        while not str(self.ws.recv()).startswith("40"):
            pass
        self._call("join", {"room": _scenario["room"]})

    def on_stop(self) -> None:
        self.stack.close()

    def _call(self, event: str, data: Any) -> Any:
        ack_id = next(self.ids)
        self.ws.send(f"42{ack_id}" + json.dumps([event, data]))
        prefix = f"43{ack_id}["
        while True:
            frame = str(self.ws.recv(timeout=10))
            if frame == "2":
                self.ws.send("3")
            elif frame.startswith(prefix):
                return json.loads(frame[len(prefix) - 1:])[0]

    def _timed(self, event: str, data: Any) -> Any:
        """Call ``event`` and report it to Locust as ``event:<status>``."""
        started = time.perf_counter()
        exception: Exception | None = None
        status, answer = "error", None
        try:
            answer = self._call(event, data)
            status = str(answer.get("status") or ("ok" if answer.get("ok") else None)
                         or answer.get("error", {}).get("code"))
        except Exception as exc:  # reported to Locust, which counts failures by type
            exception = exc
        self.environment.events.request.fire(
            request_type="sio", name=f"{event}:{status}", exception=exception, context={},
            response_time=(time.perf_counter() - started) * 1000, response_length=0)
        return answer

    @task
    def buy(self) -> None:
        self.attempt += 1
        answer = self._timed("buy", {"sale": _scenario["sale"], "qty": 1,
                                     "request_id": f"locust-{id(self)}-{self.attempt}"})
        fraction = self.environment.parsed_options.lt_checkout
        if (isinstance(answer, dict) and answer.get("status") == "reserved"
                and random.random() < fraction):
            self._timed("checkout", {
                "reservation": answer["reservation"]["id"], "payment": "cod",
                # Each person's own door: a sale's per-person limit counts doors too.
                "address": {"name": "Locust Buyer", "phone": f"+1{self.number % 10**10:010d}",
                            "line1": f"{self.number} Locust Way", "city": "Testville"}})


events.init_command_line_parser.add_listener(_arguments)
events.init.add_listener(_on_init)
events.test_start.add_listener(_open_sale)
