"""``openmessenger admin``: a node's operator commands (maintenance mode, blocked
domains, apps), run in one of two ways:

- locally (the default), on the node's host against its database: point them at
  the node the way ``serve`` is pointed (``--data-dir``, ``--database-url``,
  ``--config`` or the ``OPENMESSENGER_*`` environment). Switches work while the
  node runs (it reads them again within a second). App commands need the node's
  secret too (API keys are HMAC'd under it), found as the node finds it.
- remotely, with ``--url`` (``OPENMESSENGER_ADMIN_URL``) and the node's operator
  token (``--operator-token-file``, ``OPENMESSENGER_OPERATOR_TOKEN`` or
  ``--operator-token``), through the node's operator API (``/v1/admin/``).

Every command takes ``--json``. Exit codes: 0 done, 1 the node said no (one line
on stderr, ``error: <code>: <reason>``), 2 bad usage or input, 3 the node could
not be reached.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Protocol, TypeVar

import typer
from pydantic import BaseModel

from openmessenger.cli.admin_remote import (
    NodeUnreachable,
    OperatorRefused,
    RemoteOperator,
    RemoteSetupError,
)
from openmessenger.cli.settings import load_settings
from openmessenger.core.errors import DomainError, InvalidInput
from openmessenger.core.ids import parse_domain
from openmessenger.protocol.admin_api import (
    AdminAppList,
    DomainBlockOut,
    DomainList,
    MaintenanceOut,
)
from openmessenger.protocol.apps_api import (
    ApiKeyList,
    AppCreatedOut,
    IssuedKeyOut,
    MediaTypeList,
    MediaTypeOut,
)
from openmessenger.protocol.policies_api import AdminAccountOut

if TYPE_CHECKING:
    from openmessenger.services.federation_gate import NodeAdmin
    from openmessenger.services.operator import Operator
    from openmessenger.settings import Settings
    from openmessenger.storage.database import Database

T = TypeVar("T")

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
TOKEN_ENV = "OPENMESSENGER_OPERATOR_TOKEN"  # noqa: S105 - a variable's name
TOKEN_FILE_ENV = "OPENMESSENGER_OPERATOR_TOKEN_FILE"  # noqa: S105 - a variable's name

admin = typer.Typer(help="Node administration: maintenance mode, blocked domains, apps.")
domains = typer.Typer(help="Refuse (or accept again) federation with a domain (SM_E009).")
admin.add_typer(domains, name="domains")

DataDirOption = Annotated[Path | None, typer.Option(help="The node's data directory")]
DatabaseOption = Annotated[str | None, typer.Option(help="The node's database URL")]
ConfigOption = Annotated[Path | None, typer.Option(help="The node's TOML settings file")]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="OPENMESSENGER_ADMIN_URL",
        show_default=False,
        help="Run through this node's operator API instead, e.g. https://chat.example.org",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--operator-token",
        show_default=False,
        help=f"With --url: the node's operator token, else ${TOKEN_ENV} "
        "(on the command line other local users can see it: prefer the file or the variable)",
    ),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--operator-token-file",
        show_default=False,
        help=f"With --url: a file holding the operator token, else ${TOKEN_FILE_ENV}",
    ),
]
CaFileOption = Annotated[
    Path | None,
    typer.Option(
        "--ca-file",
        exists=True,
        dir_okay=False,
        show_default=False,
        help="With --url: a PEM CA bundle to trust besides the system's (SSL_CERT_FILE honoured)",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (one object a line)")]


class Switch(StrEnum):
    on = "on"
    off = "off"
    status = "status"


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


# --- where a command runs ------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The node a command acts on: its database here, or its operator API at ``url``."""

    settings_flags: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    token: str | None = field(default=None, repr=False)
    ca_file: Path | None = None


def target(
    data_dir: Path | None,
    database_url: str | None,
    config: Path | None,
    url: str | None,
    operator_token: str | None,
    operator_token_file: Path | None,
    ca_file: Path | None,
) -> Target:
    """Where to run, from the options every admin command takes; bad combinations exit 2."""
    local = {"data_dir": data_dir, "database_url": database_url, "config": config}
    if not url:
        remote_only = {
            "--operator-token": operator_token,
            "--operator-token-file": operator_token_file,
            "--ca-file": ca_file,
        }
        stray = [name for name, value in remote_only.items() if value is not None]
        if stray:
            raise typer.BadParameter(
                f"{', '.join(stray)} only go with --url (locally the command uses the database)",
                param_hint="--url",
            )
        return Target(settings_flags=local)
    if any(value is not None for value in local.values()):
        raise typer.BadParameter(
            "with --url the node's operator API runs the command: leave out --data-dir, "
            "--database-url and --config",
            param_hint="--url",
        )
    return Target(
        url=_checked_url(url),
        token=_token(operator_token, operator_token_file),
        ca_file=ca_file,
    )


def _checked_url(url: str) -> str:
    """https, or http to this machine only: the operator token must not cross a network in clear."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise typer.BadParameter(str(exc), param_hint="--url") from None
    if parsed.scheme == "https" and parsed.host:
        return url.rstrip("/")
    if parsed.scheme == "http" and _is_loopback(parsed.host):
        return url.rstrip("/")
    raise typer.BadParameter(
        "must be an https:// URL (http:// only to this machine: the operator token "
        "would cross the network in clear)",
        param_hint="--url",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token(given: str | None, path: Path | None) -> str:
    if given is None and path is None:
        given = os.environ.get(TOKEN_ENV) or None
        env_path = os.environ.get(TOKEN_FILE_ENV)
        path = Path(env_path) if given is None and env_path else None
    if given is not None:
        token = given.strip()
    elif path is not None:
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {path}: {exc.strerror}", param_hint="--operator-token-file"
            ) from None
    else:
        raise typer.BadParameter(
            f"--url needs the node's operator token: --operator-token-file FILE, ${TOKEN_ENV} "
            "or --operator-token",
            param_hint="--operator-token",
        )
    if not token:
        raise typer.BadParameter("the operator token is empty", param_hint="--operator-token")
    return token


# --- what a command calls: the same shapes here and over the API ---------------------


class OperatorBackend(Protocol):
    """The operator's verbs, answered in the operator API's shapes (protocol/admin_api.py)."""

    async def maintenance(self, on: bool | None) -> MaintenanceOut: ...

    async def blocked(self) -> DomainList: ...

    async def block(self, domain: str) -> DomainBlockOut: ...

    async def unblock(self, domain: str) -> DomainBlockOut: ...

    async def create_app(
        self, owner: str, app_id: str, name: str, signing_key: str | None
    ) -> AppCreatedOut: ...

    async def apps(self, owner: str | None) -> AdminAppList: ...

    async def keys(self, app: str) -> ApiKeyList: ...

    async def issue_key(
        self, app: str, scopes: list[str] | None, label: str | None
    ) -> IssuedKeyOut: ...

    async def revoke_key(self, app: str, key_id: str) -> None: ...

    async def rotate_key(self, app: str, key_id: str, grace_seconds: int) -> IssuedKeyOut: ...

    async def register_media_type(self, app: str, name: str, schema: object) -> MediaTypeOut: ...

    async def media_types(self, app: str) -> MediaTypeList: ...

    async def account(self, address: str) -> AdminAccountOut: ...

    async def set_plan(self, address: str, plan: str) -> AdminAccountOut: ...


class LocalOperator:
    """The operator's verbs on the node's database, through the node's own services."""

    def __init__(self, database: Database, settings: Settings) -> None:
        from openmessenger.services.federation_gate import NodeAdmin

        self._database = database
        self._settings = settings
        self._admin: NodeAdmin = NodeAdmin(database.uow, _Clock())
        self._operator: Operator | None = None

    def _apps(self) -> Operator:
        """Built on first use: only app commands need the node secret."""
        if self._operator is None:
            from openmessenger.crypto.keys import NodeSecrets
            from openmessenger.services.apps import AppService
            from openmessenger.services.operator import Operator, OperatorAuth

            secrets = NodeSecrets(_node_secret(self._settings))
            apps = AppService(self._database.uow, _Clock(), secrets)
            self._operator = Operator(self._database.uow, apps, OperatorAuth(None))
        return self._operator

    async def maintenance(self, on: bool | None) -> MaintenanceOut:
        if on is not None:
            await self._admin.set_maintenance(on)
        return MaintenanceOut(on=await self._admin.maintenance())

    async def blocked(self) -> DomainList:
        return DomainList(domains=list(await self._admin.blocked()))

    async def block(self, domain: str) -> DomainBlockOut:
        name = parse_domain(domain)
        return DomainBlockOut(domain=name, blocked=True, changed=await self._admin.block(name))

    async def unblock(self, domain: str) -> DomainBlockOut:
        name = parse_domain(domain)
        return DomainBlockOut(domain=name, blocked=False, changed=await self._admin.unblock(name))

    async def create_app(
        self, owner: str, app_id: str, name: str, signing_key: str | None
    ) -> AppCreatedOut:
        from openmessenger.api import render_apps

        created = await self._apps().create_app(
            owner, app_id=app_id, name=name, signing_key=signing_key
        )
        return render_apps.created(created)

    async def apps(self, owner: str | None) -> AdminAppList:
        from openmessenger.api import render_apps

        found = await self._apps().apps(owner)
        return AdminAppList.model_validate(
            {"apps": [{**render_apps.app(o.app).model_dump(), "owner": o.owner} for o in found]}
        )

    async def keys(self, app: str) -> ApiKeyList:
        from openmessenger.api import render_apps

        found = await self._apps().keys(app)
        return ApiKeyList(keys=[render_apps.api_key(k) for k in found])

    async def issue_key(
        self, app: str, scopes: list[str] | None, label: str | None
    ) -> IssuedKeyOut:
        from openmessenger.api import render_apps

        return render_apps.issued(await self._apps().issue_key(app, scopes, label))

    async def revoke_key(self, app: str, key_id: str) -> None:
        await self._apps().revoke_key(app, key_id)

    async def rotate_key(self, app: str, key_id: str, grace_seconds: int) -> IssuedKeyOut:
        from openmessenger.api import render_apps

        return render_apps.issued(await self._apps().rotate_key(app, key_id, grace_seconds))

    async def register_media_type(self, app: str, name: str, schema: object) -> MediaTypeOut:
        from openmessenger.api import render_apps

        return render_apps.media_type(await self._apps().register_media_type(app, name, schema))

    async def media_types(self, app: str) -> MediaTypeList:
        from openmessenger.api import render_apps

        found = await self._apps().media_types(app)
        return MediaTypeList(media_types=[render_apps.media_type(m) for m in found])

    async def account(self, address: str) -> AdminAccountOut:
        from openmessenger.cli.admin_accounts import local_account

        return await local_account(self._database, self._settings, address)

    async def set_plan(self, address: str, plan: str) -> AdminAccountOut:
        from openmessenger.cli.admin_accounts import local_set_plan

        return await local_set_plan(self._database, self._settings, address, plan)


class _NodeSecretProblem(Exception):
    """The node secret is missing or malformed (exit 2: the command was pointed wrong)."""


def _node_secret(settings: Settings) -> bytes:
    """The node's secret as the node loads it, but never a new one: API keys made
    under a secret the node does not have would never work."""
    from openmessenger.settings import NODE_SECRET_FILE_NAME

    path = settings.data_dir / NODE_SECRET_FILE_NAME
    if settings.node_secret is None and settings.node_secret_file is None and not path.exists():
        raise _NodeSecretProblem(
            f"the node secret is not in {path}, and neither OPENMESSENGER_NODE_SECRET nor "
            "OPENMESSENGER_NODE_SECRET_FILE is set: point --data-dir (or the environment) "
            "at the node's own, or use --url"
        )
    try:
        return settings.load_node_secret()
    except ValueError as exc:  # malformed, or too short
        raise _NodeSecretProblem(str(exc)) from None


def run_operator(where: Target, action: Callable[[OperatorBackend], Awaitable[T]]) -> T:
    """Run ``action`` against the node, here or remotely; a refusal exits with one line."""
    try:
        if where.url is None:
            return _run_local(where, action)
        assert where.token is not None
        url, token = where.url, where.token

        async def remote() -> T:
            async with RemoteOperator.connect(url, token, ca_file=where.ca_file) as node:
                return await action(node)

        return asyncio.run(remote())
    except InvalidInput as exc:
        _fail(f"{exc.code}: {exc.field}: {exc.reason}", EXIT_USAGE)
    except DomainError as exc:
        _fail(f"{exc.code}: {exc.message}", EXIT_REFUSED)
    except OperatorRefused as exc:
        _fail(str(exc), EXIT_USAGE if exc.status in (400, 422) else EXIT_REFUSED)
    except NodeUnreachable as exc:
        _fail(str(exc), EXIT_UNREACHABLE)
    except (_NodeSecretProblem, RemoteSetupError) as exc:
        _fail(str(exc), EXIT_USAGE)


def _run_local(where: Target, action: Callable[[OperatorBackend], Awaitable[T]]) -> T:
    from openmessenger.wiring import open_node_database

    settings = load_settings(**where.settings_flags)

    async def run() -> T:
        database = await open_node_database(settings)
        try:
            return await action(LocalOperator(database, settings))
        finally:
            await database.dispose()

    return asyncio.run(run())


def _fail(message: str, exit_code: int) -> NoReturn:
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(exit_code)


# --- output -----------------------------------------------------------------------------


def emit(obj: BaseModel | dict[str, Any], text: str, as_json: bool) -> None:
    """One JSON object (the API's shape), or the text."""
    typer.echo(_json(obj) if as_json else text)


def emit_lines(
    objects: Iterable[BaseModel | dict[str, Any]], texts: Iterable[str], as_json: bool
) -> None:
    """One JSON object a line, or one text line each (nothing when there are none)."""
    for line in map(_json, objects) if as_json else texts:
        typer.echo(line)


def _json(obj: BaseModel | dict[str, Any]) -> str:
    data = obj.model_dump(mode="json", by_alias=True) if isinstance(obj, BaseModel) else obj
    return json.dumps(data, ensure_ascii=False)


def printable(text: str) -> str:
    """Control characters escaped: what another account chose must not drive the terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- maintenance, domains -------------------------------------------------------------


@admin.command()
def maintenance(
    switch: Annotated[Switch, typer.Argument(help="on, off, or status")] = Switch.status,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """Maintenance mode: other nodes' messages and handshakes are refused for now (SM_E008).

    JSON: {"on": true}."""
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    on = None if switch is Switch.status else switch is Switch.on
    state = run_operator(where, lambda node: node.maintenance(on))
    emit(state, f"maintenance {'on' if state.on else 'off'}", json_)


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
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """Refuse everything from DOMAIN, and send nothing to it.

    JSON: {"domain": "spam.example", "blocked": true, "changed": true}."""
    name = _domain(domain)
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    done = run_operator(where, lambda node: node.block(name))
    emit(done, f"blocked {name}" if done.changed else f"{name} was already blocked", json_)


@domains.command()
def unblock(
    domain: Annotated[str, typer.Argument(help="a blocked domain")],
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """Accept DOMAIN again.

    JSON: {"domain": "spam.example", "blocked": false, "changed": true}."""
    name = _domain(domain)
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    done = run_operator(where, lambda node: node.unblock(name))
    emit(done, f"unblocked {name}" if done.changed else f"{name} was not blocked", json_)


@domains.command("list")
def list_blocked(
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """The blocked domains, one a line.

    JSON: one {"domain": "spam.example"} a line."""
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    found = run_operator(where, lambda node: node.blocked()).domains
    emit_lines(({"domain": name} for name in found), found, json_)


def register(app: typer.Typer) -> None:
    from openmessenger.cli import admin_accounts, admin_apps

    admin.add_typer(admin_apps.apps, name="apps")
    admin.add_typer(admin_accounts.accounts, name="accounts")
    app.add_typer(admin, name="admin")
