"""Everything that lists job kinds agrees with the registry (`jobgate.kinds`)."""

import json
import re
from pathlib import Path

import pytest
from marshmallow import ValidationError

from jobgate import kinds
from jobgate.broker import definitions
from jobgate.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_kind_has_a_worker_and_an_api_module():
    for spec in kinds.specs():
        assert callable(spec.handler), spec.name
        if not spec.internal:  # the platform makes internal jobs itself (webhook deliveries)
            assert callable(spec.prepare), spec.name
        assert spec.queue_name == f"jobgate.jobs.{spec.name}"


def test_settings_carry_every_kinds_block():
    settings = Settings.from_env(environ={"CACHE_READ_CONCURRENCY": "7"})
    for spec in kinds.specs():
        assert isinstance(settings, spec.settings)
    assert settings.cache_read_concurrency == 7


def test_procfile_runs_one_worker_per_kind():
    procfile = (ROOT / "Procfile").read_text()
    workers = re.findall(r"^worker-(\w+): exec jobgate-worker (\w+)$", procfile, re.M)
    assert sorted(workers) == sorted((k, k) for k in kinds.names())


def test_compose_runs_one_worker_per_kind():
    compose = (ROOT / "docker-compose.yml").read_text()
    services = re.findall(r"^  worker-(\w+):$", compose, re.M)
    commands = re.findall(r'command: \["jobgate-worker", "(\w+)"\]', compose)
    assert sorted(services) == sorted(commands) == sorted(kinds.names())


def test_exported_definitions_match_the_registry():
    exported = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text())
    generated = definitions()
    for section in ("exchanges", "queues", "bindings"):
        assert exported[section] == generated[section], (
            f"{section} differ: run `jobgate definitions --into deploy/rabbitmq/definitions.json`"
        )
    queues = {q["name"] for q in generated["queues"]}
    assert {spec.queue_name for spec in kinds.specs()} <= queues


def test_params_contract_refuses_what_the_gateway_refuses():
    cache = kinds.get("cache")
    assert cache.load_params({"files": ["a.mov"]})["recursive"] is True
    with pytest.raises(ValidationError):
        cache.load_params({})
    with pytest.raises(ValidationError):
        cache.load_params({"files": ["a"], "surprise": 1})
    convert = kinds.get("convert")
    with pytest.raises(ValidationError):
        convert.load_params({"input_file": "not-a-uuid"})
    with pytest.raises(ValidationError):
        convert.load_params(
            {"input_file": "6bb4629b-1487-477c-96fe-b762d82a099b", "bitrate": "999k"}
        )


def test_unknown_kind():
    with pytest.raises(kinds.UnknownKind):
        kinds.get("nope")
