"""``openmessenger edit / delete / read / receipts``: receipts, edits and deletions
for everyone. Thin: each command calls the SDK and prints (docs/cli.md).

MESSAGE_ID is a message's id, as ``--json`` output of ``send``, ``sync``,
``listen`` and ``history`` shows it.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from openmessenger.cli.device import (
    DEFAULT_PROFILE,
    JsonOption,
    ProfileOption,
    ServerOption,
    _local,
    _message_json,
    _message_text,
    _Names,
    _print,
    _print_lines,
    _printable,
    _run,
    rfc3339,
)
from openmessenger.client import Client
from openmessenger.client.revisions import Receipt

MessageArg = Annotated[str, typer.Argument(metavar="MESSAGE_ID", help="The message's id")]

MARKS = {"delivered": "✓", "read": "✓✓"}


def register(app: typer.Typer) -> None:
    """Add ``edit``, ``delete``, ``read`` and ``receipts`` to the ``openmessenger`` app."""
    app.command("edit")(edit)
    app.command("delete")(delete)
    app.command("read")(read)
    app.command("receipts")(receipts)


def edit(
    message_id: MessageArg,
    text: Annotated[str, typer.Argument(help="The new text")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Replace the text of a message you sent; every device shows the new text."""

    async def action(client: Client) -> None:
        edited = await client.edit(message_id, text)
        names = await _Names.of_contacts(client)
        _print(_message_json(edited), _message_text(edited, names), json_)

    _run(server, profile, action)


def delete(
    message_id: MessageArg,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Delete a message you sent, for everyone: the node erases it and its edits."""

    async def action(client: Client) -> None:
        gone = await client.delete_for_everyone(message_id)
        obj = {"id": gone.id, "seq": gone.seq, "from": gone.sender}
        obj["deleted_at"] = rfc3339(gone.deleted_at) if gone.deleted_at else None
        _print(obj, f"deleted {gone.id} for everyone", json_)

    _run(server, profile, action)


def read(
    message_ids: Annotated[
        list[str], typer.Argument(metavar="MESSAGE_ID...", help="Messages you read")
    ],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Tell the senders you read these messages (not while send_receipts is off)."""

    async def action(client: Client) -> None:
        sent = await client.mark_read(*message_ids)
        if json_:
            _print_lines(map(_receipt_json, sent), [], json_)
        elif sent:
            typer.echo(f"read receipts sent for {len(sent)} message(s)")
        else:
            typer.echo("no read receipts sent")

    _run(server, profile, action)


def receipts(
    message_id: MessageArg,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Who got (✓ delivered) and who read (✓✓ read) a message you sent."""

    async def action(client: Client) -> None:
        found = await client.receipts(message_id)
        _print_lines(map(_receipt_json, found), map(_receipt_line, found), json_)
        if not found and not json_:
            typer.echo("no receipts yet")

    _run(server, profile, action)


def _receipt_json(r: Receipt) -> dict[str, Any]:
    return {
        "id": r.id,
        "message_id": r.message_id,
        "reader": r.reader,
        "kind": r.kind,
        "at": rfc3339(r.at),
    }


def _receipt_line(r: Receipt) -> str:
    return f"{MARKS.get(r.kind, '?')} {r.kind} by {_printable(r.reader)} [{_local(r.at)}]"
