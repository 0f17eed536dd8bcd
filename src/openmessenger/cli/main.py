"""``openmessenger``: run a node, and use it as a device."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openmessenger.cli import admin, device, keys, owner
from openmessenger.cli import groups as groups_cli
from openmessenger.cli import policy as policy_cli
from openmessenger.cli import prefs as prefs_cli
from openmessenger.cli import requests as requests_cli
from openmessenger.cli import revisions as revisions_cli
from openmessenger.cli.settings import load_settings

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
    tls_cert: Annotated[
        Path | None, typer.Option(help="Serve HTTPS with this PEM certificate chain")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The PEM private key of --tls-cert")] = None,
    ca_file: Annotated[
        Path | None,
        typer.Option(help="Extra PEM CA bundle trusted for outbound HTTPS (besides the system's)"),
    ] = None,
    federation_proxy: Annotated[
        str | None,
        typer.Option(
            help="Send all federation traffic through this proxy, e.g. socks5h://127.0.0.1:9050"
        ),
    ] = None,
    federation_proxy_required: Annotated[
        bool | None,
        typer.Option(
            "--federation-proxy-required/--no-federation-proxy-required",
            help="Refuse to start without --federation-proxy",
            show_default=False,
        ),
    ] = None,
    federation_give_up_seconds: Annotated[
        float | None,
        typer.Option(help="Mark a message failed after trying this long [default: 86400]"),
    ] = None,
) -> None:
    """Start a node (SQLite in the data directory unless --database-url says otherwise).

    Every option is also read from OPENMESSENGER_<NAME> and from the TOML file.
    """
    from openmessenger.wiring import run

    run(
        load_settings(
            host=host,
            port=port,
            domain=domain,
            data_dir=data_dir,
            database_url=database_url,
            config=config,
            tls_cert=tls_cert,
            tls_key=tls_key,
            ca_file=ca_file,
            federation_proxy=federation_proxy,
            federation_proxy_required=federation_proxy_required,
            federation_give_up_seconds=federation_give_up_seconds,
        )
    )


device.register(app)
keys.register(app)
owner.register(app)
admin.register(app)
groups_cli.register(app)
policy_cli.register(app)
prefs_cli.register(app)
requests_cli.register(app)
revisions_cli.register(app)


def main() -> None:
    app()
