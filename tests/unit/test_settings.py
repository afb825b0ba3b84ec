from jobgate.config import Settings


def test_defaults_work_without_environment():
    s = Settings.from_env(environ={})
    assert s.cache_progress_file_threshold == 10
    assert s.cache_progress_time_threshold_ms == 2000
    assert s.rate_limit_job_create == "10/minute"


def test_environment_overrides_and_seed_aliases():
    s = Settings.from_env(
        environ={
            "CACHE_PROGRESS_TIME_THRESHOLD": "500",
            "CACHE_PROGRESS_FILE_THRESHOLD": "3",
            "API_GATEWAY_KEY": "demo-api-key-2024",
            "RATE_LIMIT_ENABLED": "false",
            "CACHE_CLIENT_PREFIXES": "/Volumes/a;C:\\b\\c",
            "JOB_BACKOFF_SECONDS": "0.5",
        }
    )
    assert s.cache_progress_time_threshold_ms == 500
    assert s.cache_progress_file_threshold == 3
    assert s.bootstrap_api_key == "demo-api-key-2024"
    assert s.rate_limit_enabled is False
    assert s.cache_client_prefixes == ("/Volumes/a", "C:\\b\\c")
    assert s.job_backoff_seconds == 0.5


def test_seed_002_rate_limit_alias_is_per_minute():
    s = Settings.from_env(environ={"RATE_LIMIT_REQUESTS_PER_MINUTE": "25"})
    assert s.rate_limit_job_create == "25/minute"
    ours = {"RATE_LIMIT_JOB_CREATE": "5/second", "RATE_LIMIT_REQUESTS_PER_MINUTE": "25"}
    assert Settings.from_env(environ=ours).rate_limit_job_create == "5/second"
