"""``openmessenger request``, ``requests [accept|decline ID]``, ``block``,
``unblock``, ``blocks`` (docs/cli.md). Thin: parse, call the SDK, print."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from openmessenger.cli.device import (
    DEFAULT_PROFILE,
    JsonOption,
    ProfileOption,
    ServerOption,
    _contact_json,
    _contact_text,
    _local,
    _print,
    _print_lines,
    _printable,
    _run,
    rfc3339,
)
from openmessenger.client import Client
from openmessenger.client.preferences import Block, ContactRequest

requests_app = typer.Typer(
    help="Contact requests waiting for your answer (list, accept, decline).",
    invoke_without_command=True,
)


def register(app: typer.Typer) -> None:
    app.command("request")(request)
    app.add_typer(requests_app, name="requests")
    requests_app.callback()(list_requests)
    requests_app.command("accept")(accept)
    requests_app.command("decline")(decline)
    app.command("block")(block)
    app.command("unblock")(unblock)
    app.command("blocks")(blocks)


def request(
    address: Annotated[str, typer.Argument(help="Their address (on this node or another of ours)")],
    note: Annotated[
        str | None, typer.Option("--note", help="a short note for them (280 characters)")
    ] = None,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Ask an address to connect, if it takes contact requests. You hear the same
    whether it arrived or not; you are connected once they accept."""

    async def action(client: Client) -> None:
        await client.request_contact(address, note)
        _print({"to": address, "status": "sent"}, f"request sent to {address}", json_)

    _run(server, profile, action)


def _request_json(r: ContactRequest) -> dict[str, Any]:
    return {
        "id": r.id,
        "from": r.sender,
        "display_name": r.sender_display_name,
        "verified": r.sender_verified,
        "note": r.note,
        "created_at": rfc3339(r.created_at),
    }


def _request_text(r: ContactRequest) -> str:
    who = r.sender if not r.sender_display_name else f"{r.sender_display_name} <{r.sender}>"
    verified = "verified" if r.sender_verified else "unverified"
    note = f"\t{_printable(r.note)}" if r.note else ""
    return f"{r.id}\t{_printable(who)}\t{verified}\t{_local(r.created_at)}{note}"


def list_requests(
    ctx: typer.Context,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """List the contact requests waiting for your answer (then: requests accept|decline ID)."""
    if ctx.invoked_subcommand is not None:
        return

    async def action(client: Client) -> None:
        found = await client.contact_requests()
        _print_lines(map(_request_json, found), map(_request_text, found), json_)
        if not found and not json_:
            typer.echo("no requests")

    _run(server, profile, action)


def accept(
    request_id: Annotated[str, typer.Argument(metavar="ID", help="from `openmessenger requests`")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Accept a request: you are connected with its sender, as with a pass code."""

    async def action(client: Client) -> None:
        contact = await client.accept_request(request_id)
        _print(_contact_json(contact), _contact_text(contact), json_)

    _run(server, profile, action)


def decline(
    request_id: Annotated[str, typer.Argument(metavar="ID", help="from `openmessenger requests`")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Decline a request: its sender is told nothing, and its later requests are dropped."""

    async def action(client: Client) -> None:
        await client.decline_request(request_id)
        _print({"id": request_id, "state": "declined"}, f"declined {request_id}", json_)

    _run(server, profile, action)


def _block_json(b: Block) -> dict[str, Any]:
    return {"address": b.address, "blocked_at": rfc3339(b.blocked_at)}


def block(
    address: Annotated[str, typer.Argument(help="any address: a contact, a request's sender")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Block an address: its messages are refused and its requests dropped."""

    async def action(client: Client) -> None:
        found = await client.block(address)
        _print(_block_json(found), f"blocked {found.address}", json_)

    _run(server, profile, action)


def unblock(
    address: Annotated[str, typer.Argument(help="a blocked address")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Take the address's messages again."""

    async def action(client: Client) -> None:
        await client.unblock(address)
        _print({"address": address, "blocked": False}, f"unblocked {address}", json_)

    _run(server, profile, action)


def blocks(
    server: ServerOption = None, profile: ProfileOption = DEFAULT_PROFILE, json_: JsonOption = False
) -> None:
    """The addresses you blocked."""

    async def action(client: Client) -> None:
        found = await client.blocks()
        _print_lines(
            map(_block_json, found),
            (f"{b.address}\tsince {_local(b.blocked_at)}" for b in found),
            json_,
        )
        if not found and not json_:
            typer.echo("no blocks")

    _run(server, profile, action)
