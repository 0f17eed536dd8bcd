"""``openmessenger``: run a node, and use it as a device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from openmessenger.cli import device

app = typer.Typer(
    name="openmessenger",
    help="Open Messenger: an open, federated, spam-free messaging node and its client.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: 8080]")] = None,
    domain: Annotated[
        str | None, typer.Option(help="The node's domain [default: localhost]")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the node keeps its data [default: per-user data dir]")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="PostgreSQL or SQLite URL [default: SQLite in data dir]")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML settings file")] = None,
) -> None:
    """Start a node (SQLite in the data directory unless --database-url says otherwise).

    Every option is also read from OPENMESSENGER_<NAME> and from the TOML file.
    """
    from openmessenger.settings import Settings
    from openmessenger.wiring import run

    given: dict[str, Any] = {
        "host": host,
        "port": port,
        "domain": domain,
        "data_dir": data_dir,
        "database_url": database_url,
        "config": config,
    }
    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        for problem in exc.errors():
            where = ".".join(str(p) for p in problem["loc"])
            typer.echo(f"error: {where}: {problem['msg']}", err=True)
        raise typer.Exit(2) from None
    run(settings)


device.register(app)


def main() -> None:
    app()
