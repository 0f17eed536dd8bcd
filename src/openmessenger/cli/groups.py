"""``openmessenger group ...``: create and run group conversations. Thin: each
command calls the SDK and prints (docs/cli.md is the contract).

GROUP is a group's id, as ``group create`` and ``group list`` print it.
"""

from __future__ import annotations

import enum
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
from openmessenger.client import Client, Group, GroupMember

group_app = typer.Typer(
    help="Group conversations: create, invite, join, leave, remove, roles, send, read."
)

GroupArg = Annotated[str, typer.Argument(metavar="GROUP", help="The group's id")]
AddressArg = Annotated[str, typer.Argument(help="An address, e.g. 4821937*chat.example.org")]


class RoleChoice(enum.StrEnum):
    owner = "owner"
    admin = "admin"
    member = "member"


def register(app: typer.Typer) -> None:
    """Add ``group`` to the ``openmessenger`` app."""
    app.add_typer(group_app, name="group")


@group_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="The group's name (at most 64 characters)")],
    members: Annotated[
        list[str] | None, typer.Argument(help="Contacts to invite", show_default=False)
    ] = None,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Create a group that you own, inviting some of your contacts."""

    async def action(client: Client) -> None:
        _print_group(await client.create_group(name, members or []), json_)

    _run(server, profile, action)


@group_app.command("list")
def list_(
    server: ServerOption = None, profile: ProfileOption = DEFAULT_PROFILE, json_: JsonOption = False
) -> None:
    """The groups you joined or are invited to."""

    async def action(client: Client) -> None:
        found = await client.groups()
        _print_lines(map(_group_json, found), map(_group_line, found), json_)
        if not found and not json_:
            typer.echo("no groups")

    _run(server, profile, action)


@group_app.command("show")
def show(
    group: GroupArg,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """The group and its participants (system ones are an app's accounts)."""

    async def action(client: Client) -> None:
        _print_group(await client.group(group), json_)

    _run(server, profile, action)


@group_app.command("invite")
def invite(
    group: GroupArg,
    address: AddressArg,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Invite a contact (owner and admins)."""

    async def action(client: Client) -> None:
        _print_group(await client.invite_to_group(group, address), json_)

    _run(server, profile, action)


@group_app.command("join")
def join(
    group: GroupArg,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Accept an invitation."""

    async def action(client: Client) -> None:
        _print_group(await client.join_group(group), json_)

    _run(server, profile, action)


@group_app.command("decline")
def decline(
    group: GroupArg, server: ServerOption = None, profile: ProfileOption = DEFAULT_PROFILE
) -> None:
    """Decline an invitation."""

    async def action(client: Client) -> None:
        await client.decline_group(group)
        typer.echo("declined")

    _run(server, profile, action)


@group_app.command("leave")
def leave(
    group: GroupArg, server: ServerOption = None, profile: ProfileOption = DEFAULT_PROFILE
) -> None:
    """Leave the group: nothing new reaches you (an owner hands the group over)."""

    async def action(client: Client) -> None:
        await client.leave_group(group)
        typer.echo("left")

    _run(server, profile, action)


@group_app.command("remove")
def remove(
    group: GroupArg,
    address: AddressArg,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Remove a participant or withdraw an invitation (owner; admins for members)."""

    async def action(client: Client) -> None:
        _print_group(await client.remove_from_group(group, address), json_)

    _run(server, profile, action)


@group_app.command("role")
def role(
    group: GroupArg,
    address: AddressArg,
    new_role: Annotated[RoleChoice, typer.Argument(metavar="ROLE", help="owner, admin or member")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """The owner makes a participant admin or member, or hands the group over (owner)."""

    async def action(client: Client) -> None:
        _print_group(await client.set_group_role(group, address, new_role.value), json_)

    _run(server, profile, action)


@group_app.command("send")
def send(
    group: GroupArg,
    text: Annotated[str, typer.Argument(help="The message")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Send a message to everyone who joined the group (end to end)."""

    async def action(client: Client) -> None:
        message = await client.send_to_group(group, text)
        names = await _Names.of_contacts(client)
        _print(_message_json(message), _message_text(message, names), json_)

    _run(server, profile, action)


@group_app.command("history")
def history(
    group: GroupArg,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """The group's messages and membership changes you may read, oldest first."""

    async def action(client: Client) -> None:
        messages = await client.group_history(group)
        names = await _Names.of_contacts(client)
        _print_lines(
            map(_message_json, messages), (_message_text(m, names) for m in messages), json_
        )

    _run(server, profile, action)


def _print_group(group: Group, as_json: bool) -> None:
    if as_json:
        _print(_group_json(group), "", as_json)
        return
    typer.echo(_group_line(group))
    for member in group.members:
        typer.echo(f"  {_member_line(member)}")


def _group_line(group: Group) -> str:
    mine = f"you: {group.role}" + (", invited" if group.state == "invited" else "")
    return f"{group.id}\t{_printable(group.name)}\t{len(group.members)} participants\t({mine})"


def _member_line(member: GroupMember) -> str:
    fields = [member.address, member.role]
    if member.kind == "system":
        fields.append(f"system: app {_printable(member.app_id or '?')}")
    if member.state == "invited":
        fields.append(f"invited by {member.invited_by}")
    elif member.joined_at is not None:
        fields.append(f"joined {_local(member.joined_at)}")
    return "\t".join(fields)


def _group_json(group: Group) -> dict[str, Any]:
    return {
        "id": group.id,
        "name": group.name,
        "mode": group.mode,
        "created_by": group.created_by,
        "created_at": rfc3339(group.created_at),
        "role": group.role,
        "state": group.state,
        "members": [
            {
                "address": m.address,
                "role": m.role,
                "kind": m.kind,
                "app_id": m.app_id,
                "state": m.state,
                "invited_by": m.invited_by,
                "joined_at": rfc3339(m.joined_at) if m.joined_at else None,
            }
            for m in group.members
        ],
    }
