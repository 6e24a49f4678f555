from __future__ import annotations

from pathlib import Path

import pytest

from liveroom.cli import main
from liveroom.settings import Settings, SettingsError


def test_env_then_flags_override(tmp_path: Path) -> None:
    env = {"LIVEROOM_PORT": "9000", "LIVEROOM_DATA_DIR": str(tmp_path),
           "LIVEROOM_DEMO": "yes", "LIVEROOM_ICE_SERVERS": "stun:a:3478, turn:b:3478",
           "LIVEROOM_TURN_USERNAME": "u", "LIVEROOM_TURN_PASSWORD": "p"}
    settings = Settings.from_env(env, port=9100, host=None)
    assert settings.port == 9100  # the flag wins
    assert settings.host == "127.0.0.1"  # unset flag falls back to the default
    assert settings.data_dir == tmp_path
    assert settings.demo is True
    assert settings.ice_servers == ("stun:a:3478", "turn:b:3478")


@pytest.mark.parametrize(
    "env",
    [{"LIVEROOM_PORT": "eighty"}, {"LIVEROOM_PORT": "70000"}, {"LIVEROOM_DEMO": "maybe"},
     {"LIVEROOM_REDIS_URL": "localhost:6379"}, {"LIVEROOM_WORKERS": "0"},
     {"LIVEROOM_ICE_SERVERS": "https://stun.example.net"},
     {"LIVEROOM_ICE_SERVERS": "turn:turn.example.net:3478"},
     {"LIVEROOM_ICE_SERVERS": "turn:turn.example.net:3478", "LIVEROOM_TURN_USERNAME": "u"},
     {"LIVEROOM_ICE_SERVERS": "turns:turn.example.net", "LIVEROOM_TURN_PASSWORD": "p"},
     {"LIVEROOM_TURN_TTL_S": "0"}, {"LIVEROOM_TURN_TTL_S": "-60"},
     {"LIVEROOM_TURN_TTL_S": "an hour"},
     {"LIVEROOM_TURN_SECRET": "k", "LIVEROOM_TURN_PASSWORD": "p"},
     {"LIVEROOM_HLS_EDGES": "-1"}, {"LIVEROOM_HLS_EDGES": "65"},
     {"LIVEROOM_HLS_PORT": "70000"},
     {"LIVEROOM_HLS_EDGES": "2", "LIVEROOM_PORT": "8000", "LIVEROOM_HLS_PORT": "8000"}],
)
def test_bad_values_are_refused_with_a_message(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_the_hls_edges_listen_next_to_the_servers_unless_told() -> None:
    assert Settings.from_env({}, port=8000, hls_edges=2).edge_port == 8001
    assert Settings.from_env({"LIVEROOM_HLS_EDGES": "2", "LIVEROOM_HLS_PORT": "8100"},
                             port=8000).edge_port == 8100


def test_secret_file_is_created_once_and_reused(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "d")
    first = settings.resolve_secret()
    assert len(first) >= 32
    assert (tmp_path / "d" / "secret").stat().st_mode & 0o777 == 0o600
    assert Settings.from_env({}, data_dir=tmp_path / "d").resolve_secret() == first


def test_env_secret_wins_over_the_file(tmp_path: Path) -> None:
    secret = "from-env-secret-value-0123456789abcdef"
    settings = Settings.from_env({"LIVEROOM_SECRET": secret}, data_dir=tmp_path)
    assert settings.resolve_secret() == secret.encode()
    assert not (tmp_path / "secret").exists()


def test_a_secret_too_short_for_hs256_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SECRET must be at least 32 bytes"):
        Settings.from_env({"LIVEROOM_SECRET": "x" * 31}, data_dir=tmp_path)


def test_ice_servers_and_turn_credentials_from_the_environment() -> None:
    settings = Settings.from_env({
        "LIVEROOM_ICE_SERVERS": " stun:stun.example.net:3478 ,,"
                                "turns:turn.example.net:5349?transport=tcp, ",
        "LIVEROOM_TURN_USERNAME": "alice",
        "LIVEROOM_TURN_PASSWORD": "s3cret=,x",
    })
    assert settings.ice_servers == ("stun:stun.example.net:3478",
                                    "turns:turn.example.net:5349?transport=tcp")
    assert (settings.turn_username, settings.turn_password) == ("alice", "s3cret=,x")


def test_no_ice_servers_by_default_and_empty_variables_mean_unset() -> None:
    assert Settings.from_env({}).ice_servers == ()
    settings = Settings.from_env({"LIVEROOM_ICE_SERVERS": " , ", "LIVEROOM_TURN_USERNAME": "",
                                  "LIVEROOM_TURN_PASSWORD": ""})
    assert settings.ice_servers == ()
    assert (settings.turn_username, settings.turn_password) == (None, None)
    # STUN needs no credentials.
    assert Settings.from_env({"LIVEROOM_ICE_SERVERS": "stun:a:3478"}).ice_servers == (
        "stun:a:3478",)


def test_a_turn_secret_alone_gives_short_lived_credentials_for_an_hour_by_default() -> None:
    settings = Settings.from_env({"LIVEROOM_ICE_SERVERS": "turn:turn.example.net:3478",
                                  "LIVEROOM_TURN_SECRET": "shared-with-coturn"})
    assert (settings.turn_secret, settings.turn_ttl_s) == ("shared-with-coturn", 3600)
    assert (settings.turn_username, settings.turn_password) == (None, None)
    assert Settings.from_env({"LIVEROOM_TURN_TTL_S": "600"}).turn_ttl_s == 600


def test_serve_refuses_a_turn_secret_together_with_static_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    # A TURN server checks one kind (coturn's use-auth-secret turns static users off), so
    # which one the pages would get is not guessed: the server does not start.
    monkeypatch.setenv("LIVEROOM_ICE_SERVERS", "turn:turn.example.net:3478")
    monkeypatch.setenv("LIVEROOM_TURN_SECRET", "shared-with-coturn")
    monkeypatch.setenv("LIVEROOM_TURN_USERNAME", "alice")
    monkeypatch.setenv("LIVEROOM_TURN_PASSWORD", "s3cret")
    assert main(["serve", "--data-dir", str(tmp_path / "d"), "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert "LIVEROOM_TURN_SECRET conflicts with LIVEROOM_TURN_USERNAME" in error
    assert not (tmp_path / "d").exists(), "nothing was started or created"


def test_serve_refuses_a_turn_server_without_credentials_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LIVEROOM_ICE_SERVERS", "turn:turn.example.net:3478")
    monkeypatch.delenv("LIVEROOM_TURN_USERNAME", raising=False)
    monkeypatch.delenv("LIVEROOM_TURN_PASSWORD", raising=False)
    monkeypatch.delenv("LIVEROOM_TURN_SECRET", raising=False)
    assert main(["serve", "--data-dir", str(tmp_path / "d"), "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert "LIVEROOM_ICE_SERVERS" in error
    assert "LIVEROOM_TURN_SECRET" in error
    assert "LIVEROOM_TURN_USERNAME" in error
    assert not (tmp_path / "d").exists(), "nothing was started or created"


async def test_buy_batching_from_the_environment_reaches_the_batcher(
        redis_url: str, data_dir: Path) -> None:
    from tests.server_harness import live_server

    settings = Settings.from_env({"LIVEROOM_BUY_BATCH_MAX_MS": "64",
                                  "LIVEROOM_BUY_BATCH_TARGET": "64"})
    assert (settings.buy_batch_max_ms, settings.buy_batch_target) == (64, 64)
    async with live_server(redis_url, data_dir, buy_batch_max_ms=64,
                           buy_batch_target=64) as server:
        batcher = server.services.inventory._batcher
        assert (batcher._max_window_s, batcher._target_batch) == (0.064, 64)
    for bad in ({"LIVEROOM_BUY_BATCH_MAX_MS": "0"}, {"LIVEROOM_BUY_BATCH_TARGET": "600"}):
        with pytest.raises(SettingsError, match="BUY_BATCH"):
            Settings.from_env(bad)


def test_transport_limits_have_sane_defaults_and_come_from_the_environment() -> None:
    defaults = Settings.from_env({})
    assert (defaults.http_header_timeout_s, defaults.http_body_timeout_s,
            defaults.socket_connect_timeout_s, defaults.rtc_connect_timeout_s) == (
        10.0, 30.0, 10.0, 15.0)
    assert defaults.max_connections_per_address == 256
    assert (defaults.allowed_hosts, defaults.public_url) == ((), None)
    settings = Settings.from_env({
        "LIVEROOM_HTTP_HEADER_TIMEOUT_S": "2.5", "LIVEROOM_HTTP_BODY_TIMEOUT_S": "4",
        "LIVEROOM_SOCKET_CONNECT_TIMEOUT_S": "3", "LIVEROOM_RTC_CONNECT_TIMEOUT_S": "20",
        "LIVEROOM_MAX_CONNECTIONS_PER_ADDRESS": "0",
        "LIVEROOM_ALLOWED_HOSTS": "shop.example, shop.example:8443 ,[::1]:8080",
        "LIVEROOM_PUBLIC_URL": "https://shop.example/live"})
    assert (settings.http_header_timeout_s, settings.http_body_timeout_s,
            settings.socket_connect_timeout_s, settings.rtc_connect_timeout_s) == (
        2.5, 4.0, 3.0, 20.0)
    assert settings.max_connections_per_address == 0
    assert settings.allowed_hosts == ("shop.example", "shop.example:8443", "[::1]:8080")
    assert settings.public_url == "https://shop.example/live"


@pytest.mark.parametrize("env", [
    {"LIVEROOM_HTTP_HEADER_TIMEOUT_S": "0"}, {"LIVEROOM_HTTP_BODY_TIMEOUT_S": "-1"},
    {"LIVEROOM_SOCKET_CONNECT_TIMEOUT_S": "soon"}, {"LIVEROOM_RTC_CONNECT_TIMEOUT_S": "7200"},
    {"LIVEROOM_MAX_CONNECTIONS_PER_ADDRESS": "-5"},
    {"LIVEROOM_MAX_CONNECTIONS_PER_ADDRESS": "many"},
    {"LIVEROOM_ALLOWED_HOSTS": "https://shop.example"},
    {"LIVEROOM_ALLOWED_HOSTS": "shop.example/path"},
    {"LIVEROOM_ALLOWED_HOSTS": "*.example"},
    {"LIVEROOM_PUBLIC_URL": "shop.example"}, {"LIVEROOM_PUBLIC_URL": "javascript:alert(1)"},
    {"LIVEROOM_PUBLIC_URL": "https://shop.example/?q=1"},
])
def test_bad_transport_limits_are_refused_with_a_message(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="LIVEROOM_"):
        Settings.from_env(env)


def test_the_qr_hosts_default_to_the_bind_address() -> None:
    from liveroom.http.certificates import default_allowed_hosts

    assert default_allowed_hosts(Settings(host="127.0.0.1", port=8080)) == (
        "127.0.0.1:8080", "localhost:8080")
    assert default_allowed_hosts(Settings(host="::1", port=9000)) == (
        "[::1]:9000", "localhost:9000")
    assert default_allowed_hosts(Settings(host="10.1.2.3", port=80)) == ("10.1.2.3:80",)
    assert default_allowed_hosts(Settings(host="0.0.0.0", port=80,
                                          allowed_hosts=("shop.example",))) == ("shop.example",)


def test_a_sentinel_url_names_the_sentinels_and_the_service() -> None:
    from liveroom.redis_target import parse_redis_url, socketio_url

    url = "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26380/liveroom?db=2"
    target = parse_redis_url(url)
    assert target.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380))
    assert (target.service, target.db, target.password) == ("liveroom", 2, "pw")
    # python-socketio's manager reads the database from the path.
    assert socketio_url(url) == "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26380/2/liveroom"
    assert Settings.from_env({"LIVEROOM_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(("url", "says"), [
    ("redis+sentinel://10.0.0.1:26379", "service name"),
    ("redis+sentinel://10.0.0.1/liveroom", "host:port"),
    ("redis+sentinel://10.0.0.1:26379,:1/liveroom", "host:port"),
    ("redis+sentinel://10.0.0.1:26379/liveroom?db=x", "number"),
    ("redis+sentinel://10.0.0.1:26379/liveroom?password=x", "only ?db=N"),
    ("http://10.0.0.1:6379", "redis+sentinel://"),
])
def test_a_malformed_redis_url_is_refused_with_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(SettingsError, match="LIVEROOM_REDIS_URL") as refused:
        Settings.from_env({"LIVEROOM_REDIS_URL": url})
    assert says in str(refused.value)


def test_the_replica_wait_is_on_by_default_and_bounded() -> None:
    assert Settings.from_env({}).redis_wait_replica
    assert not Settings.from_env({"LIVEROOM_REDIS_WAIT_REPLICA": "off"}).redis_wait_replica
    with pytest.raises(SettingsError, match="REDIS_WAIT_TIMEOUT_MS"):
        Settings.from_env({"LIVEROOM_REDIS_WAIT_TIMEOUT_MS": "0"})


def test_a_database_url_needs_the_secret_and_key_every_node_shares(tmp_path: Path) -> None:
    url = "postgresql://liveroom@db.internal:5432/liveroom"
    with pytest.raises(SettingsError,
                       match="set LIVEROOM_SECRET and LIVEROOM_SIGNING_KEY_FILE"):
        Settings.from_env({"LIVEROOM_DATABASE_URL": url})
    with pytest.raises(SettingsError, match="set LIVEROOM_SIGNING_KEY_FILE"):
        Settings.from_env({"LIVEROOM_DATABASE_URL": url, "LIVEROOM_SECRET": "s" * 40})
    settings = Settings.from_env({"LIVEROOM_DATABASE_URL": url, "LIVEROOM_SECRET": "s" * 40,
                                  "LIVEROOM_SIGNING_KEY_FILE": str(tmp_path / "k.pem")})
    assert (settings.database_url, settings.signing_key_file) == (url, tmp_path / "k.pem")


def test_a_malformed_database_url_is_refused_without_its_password() -> None:
    with pytest.raises(SettingsError, match="must start with postgresql://") as refused:
        Settings.from_env({"LIVEROOM_DATABASE_URL": "mysql://root:hunter2@db/x"})
    assert "hunter2" not in str(refused.value)


def test_webrtc_seats_default_to_100_and_come_from_the_environment() -> None:
    assert Settings.from_env({}).webrtc_seats == 100
    assert Settings.from_env({"LIVEROOM_WEBRTC_SEATS": "0"}).webrtc_seats == 0
    for bad in ("-1", "many", "100001"):
        with pytest.raises(SettingsError, match="LIVEROOM_WEBRTC_SEATS"):
            Settings.from_env({"LIVEROOM_WEBRTC_SEATS": bad})
