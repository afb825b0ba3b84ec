"""The README's configuration table names every setting (docs that cannot drift silently)."""

import dataclasses
from pathlib import Path

from jobgate.config import ENV_ALIASES, ENV_NAMES, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented():
    text = README.read_text()
    for field in dataclasses.fields(Settings):
        names = ENV_NAMES.get(field.name, (field.name.upper(),)) + ENV_ALIASES.get(field.name, ())
        # Documented under its own name or the seed's alias.
        assert any(f"`{n}`" in text for n in names), f"{names[0]} is missing from the README"
