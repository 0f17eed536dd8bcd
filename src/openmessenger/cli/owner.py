"""Account owner commands: ``register``, ``apps``, ``export``, ``delete-account``.

Thin like the other device commands: parse, call the SDK, print. docs/cli.md
and docs/apps.md describe them.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from openmessenger.cli.device import (
    DEFAULT_PROFILE,
    JsonOption,
    ProfileOption,
    ServerOption,
    _print,
    _print_lines,
    _run,
)
from openmessenger.client import Client
from openmessenger.client.owner import Registration

apps_app = typer.Typer(help="Your account's apps, and which apps may reach you.")


class OwnerKindChoice(enum.StrEnum):
    person = "person"
    organisation = "organisation"


def register(app: typer.Typer) -> None:
    app.command("register")(register_account)
    app.command("export")(export)
    app.command("delete-account")(delete_account)
    app.add_typer(apps_app, name="apps")
    apps_app.command("create")(create_app)
    apps_app.command("list")(list_apps)
    apps_app.command("allow")(allow)
    apps_app.command("delete")(delete_app)


def register_account(
    email: Annotated[str | None, typer.Option(help="verify by a code sent to this address")] = None,
    phone: Annotated[str | None, typer.Option(help="verify by a code sent by SMS (E.164)")] = None,
    totp: Annotated[bool, typer.Option(help="verify with an authenticator app (TOTP)")] = False,
    owner_kind: Annotated[
        OwnerKindChoice, typer.Option(help="who owns the account")
    ] = OwnerKindChoice.person,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Register this account (it may then make apps): one of --email, --phone, --totp.
    The code is asked for on the terminal (or read from standard input)."""
    if sum((email is not None, phone is not None, totp)) != 1:
        raise typer.BadParameter("give exactly one of --email, --phone, --totp")

    async def action(client: Client) -> None:
        done: Registration
        if totp:
            secret = await client.setup_totp()
            typer.echo(f"add this to your authenticator app: {secret.uri}", err=True)
            typer.echo(f"(or type the secret: {secret.secret})", err=True)
            code = typer.prompt("code from the app", err=True)
            done = await client.confirm_totp(code.strip(), owner_kind.value)
        else:
            channel: Literal["email", "sms"] = "email" if email is not None else "sms"
            pending = await client.start_verification(channel, email or phone or "")
            code = typer.prompt(f"code sent by {channel}", err=True)
            done = await client.confirm_verification(
                pending.verification_id, code.strip(), owner_kind.value
            )
        _print(
            {"address": done.address, "kind": done.kind, "owner_kind": done.owner_kind},
            f"{done.address} is {done.kind} ({done.owner_kind})",
            json_,
        )

    _run(server, profile, action)


def create_app(
    app_id: Annotated[str, typer.Argument(help="3-32 of a-z, 0-9, '-' (names its media types)")],
    name: Annotated[str, typer.Option(help="the app's display name")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Make an app of your (registered) account; prints its first API key, once."""

    async def action(client: Client) -> None:
        created = await client.create_app(app_id, name)
        lines = [
            f"app {created.app_id} ({created.name})",
            f"api key: {created.api_key}",
        ]
        if created.signing_seed:
            lines.append(f"app signing seed: {created.signing_seed}")
        lines.append("these are shown once: keep them now")
        _print(
            {
                "app_id": created.app_id,
                "api_key": created.api_key,
                "signing_seed": created.signing_seed,
            },
            "\n".join(lines),
            json_,
        )

    _run(server, profile, action)


def list_apps(
    server: ServerOption = None, profile: ProfileOption = DEFAULT_PROFILE, json_: JsonOption = False
) -> None:
    """Your account's apps, one a line."""

    async def action(client: Client) -> None:
        found = await client.apps()
        _print_lines(({"app_id": a} for a in found), found, json_)

    _run(server, profile, action)


def allow(
    apps: Annotated[list[str] | None, typer.Argument(help="app ids to take messages from")] = None,
    any_app: Annotated[bool, typer.Option("--any", help="take messages from any app")] = False,
    contact: Annotated[str | None, typer.Option(help="for this contact only")] = None,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Take messages sent through these apps only (--any: from any app). Messages
    from people's own devices always arrive."""
    if any_app == bool(apps):
        raise typer.BadParameter("give app ids, or --any")

    async def action(client: Client) -> None:
        allowed = None if any_app else list(apps or [])
        await client.allow_apps(allowed, contact=contact)
        scope = f"from {contact}" if contact else "from anyone"
        _print(
            {"contact": contact, "apps": allowed},
            f"{scope}: {'any app' if allowed is None else ', '.join(allowed)}",
            json_,
        )

    _run(server, profile, action)


def export(
    output: Annotated[
        Path | None, typer.Option(help="write here (default: standard output)")
    ] = None,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
) -> None:
    """All of this account's data on the node, as JSON."""

    async def action(client: Client) -> None:
        text = json.dumps(await client.export_account(), ensure_ascii=False, indent=2)
        if output is None:
            typer.echo(text)
        else:
            output.write_text(text + "\n")

    _run(server, profile, action)


def delete_app(
    app_id: Annotated[str, typer.Argument(help="an app of your account")],
    yes: Annotated[bool, typer.Option("--yes", help="really delete, now")] = False,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Delete an app with everything it holds for every account (their accounts go
    too where nothing else holds them); its keys stop working."""
    if not yes:
        raise typer.BadParameter("deleting cannot be undone: add --yes")

    async def action(client: Client) -> None:
        held = await client.delete_app(app_id)
        _print(
            {"app_id": app_id, "accounts": held},
            f"deleted {app_id} and its data for {held} account(s)",
            json_,
        )

    _run(server, profile, action)


def delete_account(
    yes: Annotated[bool, typer.Option("--yes", help="really delete, now")] = False,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Delete this account and everything of it on the node (export first to keep a copy)."""
    if not yes:
        raise typer.BadParameter("deleting cannot be undone: add --yes")

    async def action(client: Client) -> None:
        address = client.address
        await client.delete_account()
        _print({"deleted": address}, f"deleted {address}", json_)

    _run(server, profile, action)
