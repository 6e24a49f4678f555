from __future__ import annotations

from pathlib import Path

import pytest

from liveroom.settings import Settings, SettingsError


def test_env_then_flags_override(tmp_path: Path) -> None:
    env = {"LIVEROOM_PORT": "9000", "LIVEROOM_DATA_DIR": str(tmp_path),
           "LIVEROOM_DEMO": "yes", "LIVEROOM_ICE_SERVERS": "stun:a:3478, turn:b:3478"}
    settings = Settings.from_env(env, port=9100, host=None)
    assert settings.port == 9100  # the flag wins
    assert settings.host == "127.0.0.1"  # unset flag falls back to the default
    assert settings.data_dir == tmp_path
    assert settings.demo is True
    assert settings.ice_servers == ("stun:a:3478", "turn:b:3478")


@pytest.mark.parametrize(
    "env",
    [{"LIVEROOM_PORT": "eighty"}, {"LIVEROOM_PORT": "70000"}, {"LIVEROOM_DEMO": "maybe"},
     {"LIVEROOM_REDIS_URL": "localhost:6379"}, {"LIVEROOM_WORKERS": "0"}],
)
def test_bad_values_are_refused_with_a_message(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_secret_file_is_created_once_and_reused(tmp_path: Path) -> None:
    settings = Settings.from_env({}, data_dir=tmp_path / "d")
    first = settings.resolve_secret()
    assert len(first) >= 32
    assert (tmp_path / "d" / "secret").stat().st_mode & 0o777 == 0o600
    assert Settings.from_env({}, data_dir=tmp_path / "d").resolve_secret() == first


def test_env_secret_wins_over_the_file(tmp_path: Path) -> None:
    settings = Settings.from_env({"LIVEROOM_SECRET": "from-env-secret-value"}, data_dir=tmp_path)
    assert settings.resolve_secret() == b"from-env-secret-value"
    assert not (tmp_path / "secret").exists()
