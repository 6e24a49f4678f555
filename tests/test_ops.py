"""Operations: the Prometheus scrape, readiness while Redis is up and down, JSON logs."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest

from liveroom.logs import JsonFormatter, configure_logging
from liveroom.metrics import Counter, Histogram, Metrics
from liveroom.redis_server import EmbeddedRedis
from liveroom.settings import Settings, SettingsError
from tests.media.conftest import start_broadcaster, start_viewer
from tests.server_harness import TEST_NODE, LiveServer, live_server
from tests.test_commerce_edge import buyer, shop
from tests.test_media_signaling import SocketSignal, setup_room, viewer_client

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse_exposition(text: str) -> dict[str, float]:
    """Sample name with labels -> value; fails on any line that is not valid text format."""
    samples: dict[str, float] = {}
    typed: set[str] = set()
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name, labels, value = match.groups()
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or family in typed, f"{name} has no # TYPE line"
        samples[name + (labels or "")] = float(value)
    return samples


def without_node(samples: dict[str, float], node: str) -> dict[str, float]:
    """The samples keyed without their ``node`` label, which every one must carry first."""
    plain: dict[str, float] = {}
    for key, value in samples.items():
        label = f'node="{node}"'
        assert f"{{{label}" in key, f"{key} lacks {label}"
        plain[key.replace(f"{{{label},", "{").replace(f"{{{label}}}", "")] = value
    return plain


async def scrape(server: LiveServer) -> dict[str, float]:
    async with server.http.get(server.url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return without_node(parse_exposition(await response.text()), TEST_NODE)


async def test_metrics_count_sockets_rooms_buys_and_http(server: LiveServer) -> None:
    _, room_id, _, sale = await shop(server, stock=1, per_user_limit=1)
    ann = await buyer(server, room_id, "Ann")
    bob = await buyer(server, room_id, "Bob")
    assert (await ann.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "a"}))["ok"]
    sold_out = await bob.call("buy", {"sale": sale["id"], "qty": 1, "request_id": "b"})
    assert sold_out["status"] == "sold_out"
    invalid = await bob.call("buy", {"sale": sale["id"], "qty": 0, "request_id": "c"})
    assert invalid["status"] == "invalid"
    assert (await bob.call("chat", {"room": "r_nowhere", "text": "hi"}))["error"]["code"] \
        == "not_in_room"
    status, _ = await server.request("GET", "/api/rooms/r_missing")
    assert status == 404

    samples = await scrape(server)
    assert samples["liveroom_connected_sockets"] == 2
    assert samples["liveroom_rooms"] == 1
    assert samples["liveroom_room_memberships"] == 2
    assert samples['liveroom_buys_total{status="reserved"}'] == 1
    assert samples['liveroom_buys_total{status="sold_out"}'] == 1
    assert samples['liveroom_buys_total{status="invalid"}'] == 1
    assert samples["liveroom_buy_latency_seconds_count"] == 3
    assert samples['liveroom_buy_latency_seconds_bucket{le="+Inf"}'] == 3
    assert 0 < samples["liveroom_buy_latency_seconds_sum"] < 3
    assert samples['liveroom_socket_errors_total{code="not_in_room"}'] == 1
    assert samples['liveroom_http_responses_total{method="GET",status="404"}'] == 1
    assert samples['liveroom_http_responses_total{method="POST",status="201"}'] >= 3
    assert samples["liveroom_redis_up"] == 1
    assert samples["liveroom_redis_rtt_seconds_count"] >= 1

    await bob.sio.disconnect()
    server.clients.remove(bob.sio)
    samples = await scrape(server)
    assert samples["liveroom_connected_sockets"] == 1
    assert samples["liveroom_room_memberships"] == 1


async def test_relay_viewers_are_counted(server: LiveServer) -> None:
    anchor, room_id = await setup_room(server)
    broadcaster = await start_broadcaster(SocketSignal(anchor), room_id)  # type: ignore[arg-type]
    clients = [await viewer_client(server, room_id, f"v{i}") for i in range(2)]
    viewers = [await start_viewer(SocketSignal(c), room_id, c.sio.sid)  # type: ignore[arg-type]
               for c in clients]
    try:
        samples = await scrape(server)
        assert samples["liveroom_relay_viewers"] == 2
        assert samples["liveroom_relay_peer_connections"] == 3
        assert (await anchor.call("rtc:stop", {"room": room_id}))["ok"]
        samples = await scrape(server)
        assert samples["liveroom_relay_viewers"] == 0
        assert samples["liveroom_relay_peer_connections"] == 0
    finally:
        for viewer in viewers:
            await viewer.close()
        await broadcaster.pc.close()


async def test_readiness_follows_redis_and_liveness_does_not(tmp_path: Path) -> None:
    own_redis = EmbeddedRedis(data_dir=tmp_path / "redis", persist=False)
    await own_redis.start()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    try:
        async with live_server(own_redis.url, data_dir) as server:
            status, body = await server.request("GET", "/readyz")
            assert status == 200
            assert body["ok"] is True
            assert 0 < body["redis_rtt_ms"] < 500

            await own_redis.stop()
            status, body = await server.request("GET", "/readyz")
            assert status == 503
            assert body["error"]["code"] == "redis_unavailable"
            assert isinstance(body["error"]["message"], str)
            status, body = await server.request("GET", "/healthz")
            assert (status, body["ok"]) == (200, True)
            assert (await scrape(server))["liveroom_redis_up"] == 0
    finally:
        await own_redis.stop()


async def test_readiness_fails_when_redis_does_not_answer_in_time(server: LiveServer) -> None:
    status, _ = await server.request("GET", "/readyz")
    assert status == 200
    # CLIENT PAUSE: Redis accepts the connection but answers nothing for a second.
    await server.services.inventory_redis.execute_command("CLIENT", "PAUSE", "1000", "ALL")
    status, body = await server.request("GET", "/readyz")
    assert status == 503
    assert "500 ms" in body["error"]["message"]


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    histogram = Histogram("h_seconds", "test", [0.1, 0.5, 1.0])
    for value in (0.05, 0.1, 0.3, 0.7, 5.0):
        histogram.observe(value)
    assert histogram.cumulative() == [(0.1, 2), (0.5, 3), (1.0, 4), (float("inf"), 5)]
    text = "\n".join(histogram.render()) + "\n"
    samples = parse_exposition(text)
    assert samples['h_seconds_bucket{le="+Inf"}'] == samples["h_seconds_count"] == 5
    assert samples["h_seconds_sum"] == pytest.approx(6.15)


def test_label_values_are_escaped_and_counters_only_go_up() -> None:
    metrics = Metrics()
    counter = metrics.add(Counter("odd_total", "labels with quotes", ["code"]))
    counter.inc('a"b\\c\nd')
    assert 'odd_total{code="a\\"b\\\\c\\nd"} 1' in metrics.render()
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc("x", amount=-1)
    with pytest.raises(ValueError, match="takes labels"):
        counter.inc()
    with pytest.raises(ValueError, match="twice"):
        metrics.add(Counter("odd_total", "again"))


def test_json_log_lines_carry_fields_extras_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("liveroom.test_ops")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("sale %s sold out", "s_1", extra={"sale": "s_1", "remaining": 0,
                                                      "odd": object()})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("buy failed")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "sale s_1 sold out"
    assert (first["level"], first["logger"]) == ("warning", "liveroom.test_ops")
    assert (first["sale"], first["remaining"]) == ("s_1", 0)
    assert first["odd"].startswith("<object object")
    assert isinstance(first["ts"], int)
    assert first["time"].endswith("Z")
    assert second["exc_type"] == "RuntimeError"
    assert "RuntimeError: boom" in second["exc"]


def test_log_format_setting_selects_the_formatter(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings.from_env({"LIVEROOM_LOG_FORMAT": "json"})
    assert settings.log_format == "json"
    with pytest.raises(SettingsError, match="log_format"):
        Settings.from_env({"LIVEROOM_LOG_FORMAT": "xml"})
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("info", settings.log_format)
        logging.getLogger("liveroom.x").info("hello")
        logging.getLogger("liveroom.x").debug("hidden")
        lines = capsys.readouterr().err.splitlines()
        assert [json.loads(line)["message"] for line in lines] == ["hello"]
        configure_logging("info", "text")
        logging.getLogger("liveroom.x").info("plain")
        assert capsys.readouterr().err.rstrip().endswith("INFO liveroom.x plain")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
