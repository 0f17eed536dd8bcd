"""Settings for the node's own commands (``serve``, ``admin``)."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import ValidationError

from openmessenger.settings import Settings


def load_settings(**given: Any) -> Settings:
    """Settings from the flags that were given, the environment and the TOML file;
    exits with status 2 and names the setting when one is invalid."""
    try:
        return Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        for problem in exc.errors():
            where = ".".join(str(p) for p in problem["loc"]) or "settings"
            typer.echo(f"error: {where}: {problem['msg']}", err=True)
        raise typer.Exit(2) from None
