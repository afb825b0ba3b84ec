"""The command line's settings file: where it lives, who may read it, what wins over it, and
that credentials stored for one server are never sent to another."""

from __future__ import annotations

import stat

import pytest

from jobgate_client.config import Config, ConfigError, config_path
from jobgate_client.transport import DEFAULT_URL


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("JOBGATE_URL", "JOBGATE_API_KEY", "JOBGATE_CONFIG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)


def test_the_path_follows_xdg_and_jobgate_config(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert config_path() == tmp_path / "home" / ".config" / "jobgate" / "config.json"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config_path() == tmp_path / "xdg" / "jobgate" / "config.json"
    monkeypatch.setenv("JOBGATE_CONFIG", str(tmp_path / "elsewhere.json"))
    assert config_path() == tmp_path / "elsewhere.json"


def test_saved_credentials_are_readable_by_the_owner_only(tmp_path):
    path = tmp_path / "conf" / "jobgate" / "config.json"
    config = Config(path)
    config.set_server("http://a:8080/", {"api_key": "secret"})
    config.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = Config.load(path)
    assert again.url() == "http://a:8080"
    assert again.server("http://a:8080") == {"api_key": "secret"}
    assert again.server("http://b:8080") == {}, "another server gets no credentials"


def test_option_then_environment_then_file_then_default(monkeypatch, tmp_path):
    config = Config(tmp_path / "c.json")
    assert config.url() == DEFAULT_URL
    config.set_server("http://from-file:1", {})
    assert config.url() == "http://from-file:1"
    monkeypatch.setenv("JOBGATE_URL", "http://from-env:2")
    assert config.url() == "http://from-env:2"
    assert config.url("from-option:3") == "http://from-option:3"


def test_a_broken_file_is_a_clear_error(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        Config.load(path)
    assert Config.load(tmp_path / "missing.json").data == {}
