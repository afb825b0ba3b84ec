"""The README's configuration table names every setting (docs that cannot drift silently)."""

import dataclasses
from pathlib import Path

from jobgate.config import ENV_NAMES, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented():
    text = README.read_text()
    for field in dataclasses.fields(Settings):
        name = ENV_NAMES.get(field.name, (field.name.upper(),))[0]
        if name.endswith("_MS"):
            name = name[: -len("_MS")]  # documented under the seed's own name
        assert f"`{name}`" in text, f"{name} is missing from the README's configuration table"
