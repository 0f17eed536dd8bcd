"""``openmessenger admin``: switches of a node, changed in its database, so they
work while the node runs (it reads them again within a second).

Point it at the node the way ``serve`` is pointed: ``--data-dir``,
``--database-url``, ``--config`` or the ``OPENMESSENGER_*`` environment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from openmessenger.cli.settings import load_settings
from openmessenger.core.errors import InvalidInput
from openmessenger.core.ids import parse_domain
from openmessenger.services.federation_gate import NodeAdmin

T = TypeVar("T")

admin = typer.Typer(help="Node administration: maintenance mode, blocked domains.")
domains = typer.Typer(help="Refuse (or accept again) federation with a domain (SM_E009).")
admin.add_typer(domains, name="domains")

DataDirOption = Annotated[Path | None, typer.Option(help="The node's data directory")]
DatabaseOption = Annotated[str | None, typer.Option(help="The node's database URL")]
ConfigOption = Annotated[Path | None, typer.Option(help="The node's TOML settings file")]


class Switch(StrEnum):
    on = "on"
    off = "off"
    status = "status"


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def _with_admin(
    data_dir: Path | None,
    database_url: str | None,
    config: Path | None,
    action: Callable[[NodeAdmin], Awaitable[T]],
) -> T:
    from openmessenger.wiring import open_node_database

    settings = load_settings(data_dir=data_dir, database_url=database_url, config=config)

    async def run() -> T:
        database = await open_node_database(settings)
        try:
            return await action(NodeAdmin(database.uow, _Clock()))
        finally:
            await database.dispose()

    return asyncio.run(run())


@admin.command()
def maintenance(
    switch: Annotated[Switch, typer.Argument(help="on, off, or status")] = Switch.status,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
) -> None:
    """Maintenance mode: other nodes' messages and handshakes are refused for now (SM_E008)."""

    async def act(node: NodeAdmin) -> bool:
        if switch is not Switch.status:
            await node.set_maintenance(switch is Switch.on)
        return await node.maintenance()

    on = _with_admin(data_dir, database_url, config, act)
    typer.echo(f"maintenance {'on' if on else 'off'}")


def _domain(value: str) -> str:
    try:
        return parse_domain(value)
    except InvalidInput as exc:
        raise typer.BadParameter(exc.reason, param_hint="DOMAIN") from None


@domains.command()
def block(
    domain: Annotated[str, typer.Argument(help="e.g. spam.example")],
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
) -> None:
    """Refuse everything from DOMAIN, and send nothing to it."""
    name = _domain(domain)

    async def act(node: NodeAdmin) -> bool:
        return await node.block(parse_domain(name))

    added = _with_admin(data_dir, database_url, config, act)
    typer.echo(f"blocked {name}" if added else f"{name} was already blocked")


@domains.command()
def unblock(
    domain: Annotated[str, typer.Argument(help="a blocked domain")],
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
) -> None:
    """Accept DOMAIN again."""
    name = _domain(domain)

    async def act(node: NodeAdmin) -> bool:
        return await node.unblock(parse_domain(name))

    removed = _with_admin(data_dir, database_url, config, act)
    typer.echo(f"unblocked {name}" if removed else f"{name} was not blocked")


@domains.command("list")
def list_blocked(
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
) -> None:
    """The blocked domains, one a line."""

    async def act(node: NodeAdmin) -> list[str]:
        return list(await node.blocked())

    for name in _with_admin(data_dir, database_url, config, act):
        typer.echo(name)


def register(app: typer.Typer) -> None:
    app.add_typer(admin, name="admin")
