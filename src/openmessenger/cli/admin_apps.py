"""``openmessenger admin apps``: apps of any registered account of the node, their
API keys and custom media types; locally or with ``--url`` (see admin.py).

With ``--json`` each command prints the operator API's shapes
(protocol/apps_api.py, protocol/admin_api.py): one object, or one object a line
for lists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from openmessenger.cli.admin import (
    CaFileOption,
    ConfigOption,
    DatabaseOption,
    DataDirOption,
    JsonOption,
    TokenFileOption,
    TokenOption,
    UrlOption,
    emit,
    emit_lines,
    printable,
    run_operator,
    target,
    when,
)
from openmessenger.core.apps import parse_app_id, parse_app_name, parse_scopes
from openmessenger.core.errors import InvalidInput
from openmessenger.core.ids import parse_address
from openmessenger.protocol.admin_api import AdminAppOut
from openmessenger.protocol.apps_api import ApiKeyOut, IssuedKeyOut, MediaTypeOut

apps = typer.Typer(
    help="Apps of the node's registered accounts: create, list, API keys, media types."
)
keys = typer.Typer(help="An app's API keys: list, create, revoke, rotate.")
media_types = typer.Typer(help="An app's custom media types app.<app-id>.<name>.")
apps.add_typer(keys, name="keys")
apps.add_typer(media_types, name="media-types")

AppArgument = Annotated[str, typer.Argument(metavar="APP", help="The app's id")]
KeyIdArgument = Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (keys list)")]
SHOWN_ONCE = "shown this once: store {} now; the node keeps only {}."


def _checked(parse: Callable[[str], str], value: str, hint: str) -> str:
    """Checked here, so that local and remote runs refuse a typo alike (exit 2)."""
    try:
        return parse(value)
    except InvalidInput as exc:
        raise typer.BadParameter(exc.reason, param_hint=hint) from None


def _address(value: str) -> str:
    return _checked(lambda v: parse_address(v).address, value, "--owner")


# --- apps ---------------------------------------------------------------------------


@apps.command()
def create(
    owner: Annotated[
        str,
        typer.Option(
            help="The owner: a registered account of this node, e.g. 4821937*chat.example.org"
        ),
    ],
    app_id: Annotated[
        str, typer.Option("--id", help="The app's id: 3-32 of a-z 0-9 -, from a letter")
    ],
    name: Annotated[str, typer.Option(help="The app's name (1-64 characters)")],
    signing_key: Annotated[
        str | None,
        typer.Option(
            help="The app key's Ed25519 public key, base64; leave out to let the node make a "
            "pair (its seed is then shown once)",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """Create an app for OWNER, with its first API key (every scope).

    The API key, and the signing seed when the node made the key pair, are shown
    once. JSON: {"app": {...}, "api_key": {..., "key": "omk_..."}, "signing_seed": ...}."""
    address = _address(owner)
    app_id = _checked(parse_app_id, app_id, "--id")
    name = _checked(parse_app_name, name, "--name")
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    created = run_operator(where, lambda node: node.create_app(address, app_id, name, signing_key))
    lines = [
        f"created app {created.app.id} ({printable(created.app.name)}) for {address}",
        f"api key: {created.api_key.key}",
        f"api key id: {created.api_key.id}",
    ]
    if created.signing_seed is not None:
        lines.append(f"signing seed: {created.signing_seed}")
        lines.append(
            "The API key and the signing seed are "
            + SHOWN_ONCE.format("them", "an HMAC of the key and never the seed")
        )
    else:
        lines.append("The API key is " + SHOWN_ONCE.format("it", "an HMAC of it"))
    emit(created, "\n".join(lines), json_)


@apps.command("list")
def list_apps(
    owner: Annotated[
        str | None, typer.Option(help="Only this account's apps", show_default=False)
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """The node's apps (or OWNER's), by id: id, owner, name, created.

    JSON: one {"id", "name", "signing_key", "created_at", "owner"} a line."""
    address = _address(owner) if owner is not None else None
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    found = run_operator(where, lambda node: node.apps(address)).apps
    emit_lines(found, map(_app_line, found), json_)
    if not found and not json_:
        typer.echo("no apps")


def _app_line(app: AdminAppOut) -> str:
    return f"{app.id}\t{app.owner}\t{printable(app.name)}\tcreated {when(app.created_at)}"


# --- API keys -------------------------------------------------------------------------


@keys.command("list")
def list_keys(
    app: AppArgument,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """APP's API keys (never the keys themselves: the node keeps HMACs): id, state, scopes, label.

    JSON: one {"id", "scopes", "label", "created_at", "expires_at", "revoked_at"} a line."""
    app = _checked(parse_app_id, app, "APP")
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    found = run_operator(where, lambda node: node.keys(app)).keys
    now = datetime.now(UTC)
    emit_lines(found, (_key_line(k, now) for k in found), json_)


def _key_line(key: ApiKeyOut, now: datetime) -> str:
    if key.revoked_at is not None:
        state = f"revoked {when(key.revoked_at)}"
    elif key.expires_at is not None:
        state = f"{'expired' if key.expires_at <= now else 'expires'} {when(key.expires_at)}"
    else:
        state = "active"
    label = printable(key.label) if key.label else "-"
    return f"{key.id}\t{state}\t{','.join(key.scopes)}\t{label}"


@keys.command("create")
def create_key(
    app: AppArgument,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="What the key may do (repeat): accounts, messages, media-types, webhooks, "
            "data [default: all]",
            show_default=False,
        ),
    ] = None,
    label: Annotated[
        str | None, typer.Option(help="A note on where the key is used", show_default=False)
    ] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """A new API key for APP, shown once.

    JSON: {"id", "scopes", "label", "created_at", "expires_at", "revoked_at", "key"}."""
    app = _checked(parse_app_id, app, "APP")
    scopes = _scopes(scope)
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    issued = run_operator(where, lambda node: node.issue_key(app, scopes, label))
    emit(issued, _issued_text(issued), json_)


def _scopes(given: list[str] | None) -> list[str] | None:
    if not given:
        return None
    try:
        return sorted(s.value for s in parse_scopes(given))
    except InvalidInput as exc:
        raise typer.BadParameter(exc.reason, param_hint="--scope") from None


def _issued_text(issued: IssuedKeyOut, *extra: str) -> str:
    return "\n".join(
        [
            f"api key: {issued.key}",
            f"api key id: {issued.id}",
            f"scopes: {' '.join(issued.scopes)}",
            *extra,
            "The API key is " + SHOWN_ONCE.format("it", "an HMAC of it"),
        ]
    )


@keys.command("revoke")
def revoke_key(
    app: AppArgument,
    key_id: KeyIdArgument,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """Revoke an API key of APP. The node's processes remember valid keys for up to
    10 seconds: with --url the process that answers stops taking it at once, the
    others (and, run locally, all of them) within those 10 seconds.

    JSON: {"app_id": "shop", "id": "<key id>", "state": "revoked"}."""
    app = _checked(parse_app_id, app, "APP")
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    run_operator(where, lambda node: node.revoke_key(app, key_id))
    emit(
        {"app_id": app, "id": key_id, "state": "revoked"},
        f"revoked key {printable(key_id)} of app {app}",
        json_,
    )


@keys.command("rotate")
def rotate_key(
    app: AppArgument,
    key_id: KeyIdArgument,
    grace_seconds: Annotated[
        int, typer.Option(min=0, max=7 * 86_400, help="How long the old key keeps working")
    ] = 3600,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """A new key for APP with KEY_ID's scopes and label, shown once; the old key stops
    working after the grace period.

    JSON: the new key, as keys create prints it."""
    app = _checked(parse_app_id, app, "APP")
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    issued = run_operator(where, lambda node: node.rotate_key(app, key_id, grace_seconds))
    until = when(issued.created_at + timedelta(seconds=grace_seconds))
    emit(issued, _issued_text(issued, f"old key {printable(key_id)} works until {until}"), json_)


# --- media types ------------------------------------------------------------------------


@media_types.command("add")
def add_media_type(
    app: AppArgument,
    name: Annotated[str, typer.Argument(help="The <name> of app.<app-id>.<name>")],
    schema: Annotated[
        Path,
        typer.Option(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A JSON file: the JSON Schema (2020-12) the messages' metadata must match",
        ),
    ],
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """Register the media type app.APP.NAME; its schema never changes afterwards.

    JSON: {"name": "app.shop.order", "schema": {...}, "created_at": "..."}."""
    app = _checked(parse_app_id, app, "APP")
    try:
        document = json.loads(schema.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise typer.BadParameter(f"not a JSON file: {exc}", param_hint="--schema") from None
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    added = run_operator(where, lambda node: node.register_media_type(app, name, document))
    emit(added, f"registered {added.name}", json_)


@media_types.command("list")
def list_media_types(
    app: AppArgument,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """APP's media types: name, created.

    JSON: one {"name", "schema", "created_at"} a line."""
    app = _checked(parse_app_id, app, "APP")
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    found = run_operator(where, lambda node: node.media_types(app)).media_types
    emit_lines(found, map(_media_type_line, found), json_)


def _media_type_line(media_type: MediaTypeOut) -> str:
    return f"{media_type.name}\tcreated {when(media_type.created_at)}"
