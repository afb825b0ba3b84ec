"""JOBGATE_CONFIG_FILE (environment > file > default), the reloadable settings' holder, and
the redaction every /api/config answer goes through (jobgate.runtime_config)."""

from __future__ import annotations

import contextlib
import json

import pytest

from jobgate import runtime_config
from jobgate.config import CONFIG_FILE_VAR, ConfigFileError, Settings
from jobgate.runtime_config import REDACTED, Loaded, RuntimeSettings, redact, redact_url


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- the file ----------------------------------------------------------------------------------


def test_file_values_sit_between_the_environment_and_the_defaults(tmp_path):
    path = write(
        tmp_path,
        "jobgate.json",
        json.dumps(
            {
                "rate_limit_default": "50/minute",
                "JOB_MAX_ATTEMPTS": 7,  # a variable's name works too
                "container_image_allowlist": ["alpine*", "busybox"],
                "rate_limit_enabled": False,
                "job_backoff_seconds": 1,
                "API_GATEWAY_KEY": "from-the-file",  # an alias
                "RATE_LIMIT_REQUESTS_PER_MINUTE": "25",  # its format applies
            }
        ),
    )
    s = Settings.from_env(environ={"JOBGATE_CONFIG_FILE": path, "JOB_MAX_ATTEMPTS": "4"})
    assert s.rate_limit_default == "50/minute"
    assert s.job_max_attempts == 4  # the environment wins
    assert s.container_image_allowlist == ("alpine*", "busybox")
    assert s.rate_limit_enabled is False
    assert s.job_backoff_seconds == 1.0 and isinstance(s.job_backoff_seconds, float)
    assert s.bootstrap_api_key == "from-the-file"
    assert s.rate_limit_job_create == "25/minute"
    assert s.rate_limit_status == "600/minute"  # default


def test_toml_files_and_strings_written_as_in_the_environment(tmp_path):
    path = write(
        tmp_path,
        "jobgate.toml",
        'rate_limit_tasks = "10/hour;5/minute"\ntask_http_allowed_hosts = "a.example,b.example"\n'
        'rate_limit_enabled = "off"\nworker_concurrency = "3"\n',
    )
    s = Settings.from_env(environ={"JOBGATE_CONFIG_FILE": path})
    assert s.rate_limit_tasks == "10/hour;5/minute"
    assert s.task_http_allowed_hosts == ("a.example", "b.example")
    assert s.rate_limit_enabled is False and s.worker_concurrency == 3


def test_without_the_file_variable_nothing_changes():
    assert Settings.from_env(environ={}) == Settings()


def test_every_problem_of_a_file_is_reported(tmp_path):
    path = write(
        tmp_path,
        "bad.json",
        json.dumps(
            {
                "no_such_setting": 1,
                "job_max_attempts": "many",
                "rate_limit_enabled": "maybe",
                "container_image_allowlist": "ok,as,a,string",
                "task_http_allowed_hosts": [1, 2],
                "worker_concurrency": True,
            }
        ),
    )
    with pytest.raises(ConfigFileError) as caught:
        Settings.from_env(environ={"JOBGATE_CONFIG_FILE": path})
    paths = sorted(e["path"] for e in caught.value.errors)
    assert paths == [
        "job_max_attempts",
        "no_such_setting",
        "rate_limit_enabled",
        "task_http_allowed_hosts",
        "worker_concurrency",
    ]


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigFileError, match="cannot read"):
        runtime_config.read_file(str(tmp_path / "missing.json"))
    with pytest.raises(ConfigFileError, match="not valid"):
        runtime_config.read_file(write(tmp_path, "x.json", "{nope"))
    with pytest.raises(ConfigFileError, match="must be an object"):
        runtime_config.read_file(write(tmp_path, "x.json", "[1]"))


def test_values_are_checked_beyond_their_type():
    with pytest.raises(ConfigFileError) as caught:
        runtime_config.check_document(
            {
                "rate_limit_default": "lots",
                "job_backoff": "linear",
                "job_lease_seconds": -1,
                "rate_limit_status": "5/minute",
                "proxy_allowed_upstreams": ["10.0.0.0/8", "bogus"],
                "trusted_proxies": "10.0.0.1, 10.0.0.0/33",
            }
        )
    assert sorted(e["path"] for e in caught.value.errors) == [
        "job_backoff",
        "job_lease_seconds",
        "proxy_allowed_upstreams",
        "rate_limit_default",
        "trusted_proxies",
    ]
    by_path = {e["path"]: e["message"] for e in caught.value.errors}
    assert "'bogus' is no address or network" in by_path["proxy_allowed_upstreams"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PROXY_ALLOWED_UPSTREAMS", "127.0.0.0/8,bogus"), ("TRUSTED_PROXIES", "edge.local")],
)
def test_a_process_does_not_start_with_a_network_that_is_none(tmp_path, variable, value):
    """Every proxy write (and every forwarded request) would fail on it later."""
    with pytest.raises(ValueError, match=f"{variable}: .* is no address or network"):
        Settings.from_env({variable: value})
    path = write(tmp_path, "bad.json", json.dumps({variable.lower(): value}))
    with pytest.raises(ValueError, match=variable):
        Settings.from_env({CONFIG_FILE_VAR: path})


# --- reloading ---------------------------------------------------------------------------------


def test_reloaded_takes_only_reloadable_keys_and_leaves_the_environment_alone():
    base = Settings(rate_limit_default="9/minute", rate_limit_login="8/minute")
    doc = {"rate_limit_login": "1/minute", "job_max_attempts": 9, "rate_limit_status": "2/second"}
    new = runtime_config.reloaded(base, doc, env_keys={"rate_limit_login"})
    assert new.rate_limit_login == "8/minute"  # pinned by the environment
    assert new.rate_limit_status == "2/second"
    assert new.rate_limit_default == "1200/minute"  # not in the file: its default
    assert new.job_max_attempts == base.job_max_attempts  # needs a restart


class FakeDatabase:
    def __init__(self) -> None:
        self.fail = False
        self.reads = 0

    @contextlib.contextmanager
    def autocommit(self):
        self.reads += 1
        if self.fail:
            raise OSError("database away")
        yield object()


def test_the_holder_reads_the_row_at_most_once_per_interval(monkeypatch):
    database = FakeDatabase()
    row = {"loaded": Loaded()}
    monkeypatch.setattr(runtime_config, "load", lambda conn: row["loaded"])
    base = Settings(container_image_allowlist=("busybox",))
    holder = RuntimeSettings(base, database, environ={}, interval_s=3600)
    assert holder.current() is base and database.reads == 1
    row["loaded"] = Loaded(5, {"container_image_allowlist": ["alpine*"]})
    assert holder.current() is base and database.reads == 1  # not due yet
    assert holder.refresh(force=True) is True
    assert holder.current().container_image_allowlist == ("alpine*",)
    assert holder.loaded.version == 5
    database.fail = True  # kept while the database is away
    assert holder.refresh(force=True) is False
    assert holder.current().container_image_allowlist == ("alpine*",)
    database.fail = False
    row["loaded"] = Loaded()  # the row is gone: back to what the process started with
    assert holder.refresh(force=True) is True and holder.current() == base


def test_the_holder_keeps_environment_values(monkeypatch):
    monkeypatch.setattr(
        runtime_config, "load", lambda conn: Loaded(2, {"rate_limit_default": "1/second"})
    )
    base = Settings(rate_limit_default="7/minute")
    pinned = RuntimeSettings(base, FakeDatabase(), environ={"RATE_LIMIT_DEFAULT": "7/minute"})
    assert pinned.current().rate_limit_default == "7/minute"
    free = RuntimeSettings(base, FakeDatabase(), environ={})
    assert free.current().rate_limit_default == "1/second"


def test_a_document_this_process_cannot_read_changes_nothing(monkeypatch):
    monkeypatch.setattr(
        runtime_config, "load", lambda conn: Loaded(3, {"rate_limit_enabled": "maybe"})
    )
    holder = RuntimeSettings(Settings(), FakeDatabase(), environ={})
    assert holder.current() == Settings() and holder.loaded.version == 3


def test_a_stored_document_with_a_bad_value_changes_nothing(monkeypatch):
    """A row written before values were checked this far: kept out, not a crash."""
    bad = {"proxy_allowed_upstreams": ["bogus"], "rate_limit_default": "1/second"}
    monkeypatch.setattr(runtime_config, "load", lambda conn: Loaded(4, bad))
    holder = RuntimeSettings(Settings(), FakeDatabase(), environ={})
    assert holder.current() == Settings() and holder.loaded.version == 4


# --- redaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://jobgate:db-pw@127.0.0.1:5432/jobgate",
            f"postgresql://jobgate:{REDACTED}@127.0.0.1:5432/jobgate",
        ),
        ("redis://:redis-pw@cache:6379/0", f"redis://:{REDACTED}@cache:6379/0"),
        ("amqp://guest:gu%40est@mq/%2F", f"amqp://guest:{REDACTED}@mq/%2F"),
        ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
        ("http://user@host/", "http://user@host/"),
        ("memory://", "memory://"),
        ("https://h/x?token=abc&page=2", f"https://h/x?token={REDACTED}&page=2"),
        ("var/keys/jwt-private.pem", "var/keys/jwt-private.pem"),
    ],
)
def test_url_passwords_are_hidden(url, shown):
    assert redact_url(url) == shown


def test_secret_fields_are_masked_and_empty_ones_stay_empty():
    assert redact("bootstrap_api_key", "k-123") == REDACTED
    assert redact("bootstrap_api_key", "") == ""
    assert redact("bootstrap_admin_password", "pw") == REDACTED
    assert redact("access_token_ttl", 900) == 900
    assert redact("jwt_private_key_file", "var/keys/a.pem") == "var/keys/a.pem"
    assert redact("allowed_extensions", ("mp4",)) == ["mp4"]


def test_no_secret_value_appears_in_the_public_settings():
    secrets = ["adm1n-pw", "key-4-api", "pg-pw-1", "amqp-pw-2", "redis-pw-3", "mgmt-pw-4"]
    settings = Settings(
        bootstrap_admin_password=secrets[0],
        bootstrap_api_key=secrets[1],
        database_url=f"postgresql://u:{secrets[2]}@db/jobgate",
        amqp_url=f"amqp://u:{secrets[3]}@mq/%2F",
        rate_limit_storage_uri=f"redis://:{secrets[4]}@cache:6379",
        rabbitmq_management_url=f"http://admin:{secrets[5]}@mq:15672",
    )
    shown = runtime_config.public_settings(settings)
    text = json.dumps(shown)
    assert not [s for s in secrets if s in text]
    assert shown["database_url"] == f"postgresql://u:{REDACTED}@db/jobgate"
    assert set(runtime_config.redacted_keys(settings)) == {
        "bootstrap_admin_password",
        "bootstrap_api_key",
        "database_url",
        "amqp_url",
        "rate_limit_storage_uri",
        "rabbitmq_management_url",
    }
