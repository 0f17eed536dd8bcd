"""Device commands: ``whoami``, ``name``, ``code``, ``connect``, ``contacts``,
``send``, ``sync``, ``history``, ``listen``. Thin: each parses its options,
calls the SDK once or twice and prints. docs/cli.md is the contract for what
they print.

Exit codes: 0 done, 1 the node or the local profile said no (one line on
stderr, e.g. ``error: refused``), 2 bad usage, 3 the node could not be reached.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import warnings
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import platformdirs
import typer

from openmessenger.client import (
    Client,
    ClientError,
    CodeInfo,
    Contact,
    InvalidArgumentError,
    IssuedCode,
    Me,
    Message,
    RefusedError,
    ServerUnreachableError,
    StateStore,
)
from openmessenger.client.e2e import DeviceListChangedWarning, KeysChangedWarning

DEFAULT_SERVER = "http://127.0.0.1:8080"
DEFAULT_PROFILE = "default"
HOME_ENV = "OPENMESSENGER_HOME"
EXIT_ERROR = 1
EXIT_UNREACHABLE = 3
_PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="OPENMESSENGER_SERVER",
        show_default=False,
        help="The node's URL [default: the profile's node, else http://127.0.0.1:8080]",
    ),
]
ProfileOption = Annotated[
    str,
    typer.Option("--profile", envvar="OPENMESSENGER_PROFILE", help="Which local device to act as"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object per line")]


def register(app: typer.Typer) -> None:
    """Add the device commands to the ``openmessenger`` app."""
    for command in (whoami, name, code, connect, contacts, send, sync, history, listen):
        app.command()(command)


# -- commands ------------------------------------------------------------------


def whoami(
    server: ServerOption = None, profile: ProfileOption = DEFAULT_PROFILE, json_: JsonOption = False
) -> None:
    """Show this device's address and display name (registers the device on first use)."""

    async def action(client: Client) -> None:
        _print_me(await client.whoami(), json_)

    _run(server, profile, action)


def name(
    display_name: Annotated[str, typer.Argument(help="At most 40 letters, digits and spaces")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Set the display name your contacts see."""

    async def action(client: Client) -> None:
        _print_me(await client.set_display_name(display_name), json_)

    _run(server, profile, action)


def code(
    for_address: Annotated[
        str | None,
        typer.Option("--for", help="Only this address may use the code", show_default=False),
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List your codes instead")] = False,
    withdraw: Annotated[
        str | None, typer.Option("--withdraw", metavar="ID", help="Withdraw the code with this id")
    ] = None,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Issue a one-time pass code (6 digits, one hour) to give to someone you will talk to."""
    if sum((for_address is not None, list_, withdraw is not None)) > 1:
        raise typer.BadParameter("use only one of --for, --list and --withdraw")

    async def action(client: Client) -> None:
        if list_:
            codes = await client.list_codes()
            _print_lines((_code_info_json(c) for c in codes), map(_code_info_text, codes), json_)
            if not codes and not json_:
                typer.echo("no codes")
        elif withdraw is not None:
            await client.withdraw_code(withdraw)
            _print({"id": withdraw, "state": "withdrawn"}, f"withdrawn {withdraw}", json_)
        else:
            issued = await client.issue_code(for_address)
            _print(_issued_json(issued), _issued_text(issued), json_)

    _run(server, profile, action)


def connect(
    address: Annotated[str, typer.Argument(help="Their address, e.g. 4821937*chat.example.org")],
    pass_code: Annotated[str, typer.Argument(metavar="CODE", help="The pass code they gave you")],
    no_replies: Annotated[
        bool, typer.Option("--no-replies", help="You send; they cannot answer")
    ] = False,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Connect with an address (on this node or another) using a pass code its owner gave you."""

    async def action(client: Client) -> None:
        contact = await client.connect(address, pass_code, allow_replies=not no_replies)
        text = f"connected with {_who(contact.address, contact.display_name)}"
        _print(_contact_json(contact), text, json_)

    _run(server, profile, action)


def contacts(
    server: ServerOption = None, profile: ProfileOption = DEFAULT_PROFILE, json_: JsonOption = False
) -> None:
    """List the addresses you are connected with."""

    async def action(client: Client) -> None:
        found = await client.contacts()
        _print_lines(map(_contact_json, found), map(_contact_text, found), json_)
        if not found and not json_:
            typer.echo("no contacts yet")

    _run(server, profile, action)


def send(
    address: Annotated[str, typer.Argument(help="A contact's address")],
    text: Annotated[str, typer.Argument(help="The message")],
    wait: Annotated[
        bool,
        typer.Option(
            "--wait",
            help="Wait until the receiving node has it (delivered) or the node gives up "
            "(failed); exit 1 unless delivered",
        ),
    ] = False,
    ephemeral: Annotated[
        bool,
        typer.Option(
            "--ephemeral",
            help="A disappearing message to one device of the contact: relayed from "
            "memory, never stored (docs/conversations.md)",
        ),
    ] = False,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            metavar="ID",
            show_default=False,
            help="With --ephemeral: the contact's device [default: its only device]",
        ),
    ] = None,
    lifespan: Annotated[
        int | None,
        typer.Option(
            "--lifespan",
            metavar="SECONDS",
            min=1,
            show_default=False,
            help="With --ephemeral: how long the receiving device keeps the text "
            "[default: your disappearing_timer preference, else 60]",
        ),
    ] = None,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Send a message to a contact."""
    if not ephemeral and (device is not None or lifespan is not None):
        raise typer.BadParameter("--device and --lifespan go with --ephemeral")
    if ephemeral and wait:
        raise typer.BadParameter("--wait does not go with --ephemeral")

    async def action(client: Client) -> None:
        if ephemeral:
            from openmessenger.cli import ephemeral as disappearing

            await disappearing.send(
                client, address, text, device=device, lifespan=lifespan, as_json=json_
            )
            return
        message = await client.send(address, text)
        text_line = _message_text(message, _Names(client))
        if wait:
            message = await client.wait_until_settled(message)
            text_line = f"{text_line}\t{message.status}"
        _print(_message_json(message), text_line, json_)
        if wait and message.status != "delivered":
            _fail(f"not delivered: {message.status}", EXIT_ERROR)

    _run(server, profile, action)


def sync(
    server: ServerOption = None, profile: ProfileOption = DEFAULT_PROFILE, json_: JsonOption = False
) -> None:
    """Print the messages that arrived since the last sync or listen, once each."""

    async def action(client: Client) -> None:
        messages = await client.sync()
        names = await _Names.of_contacts(client)
        _print_lines(
            map(_message_json, messages), (_message_text(m, names) for m in messages), json_
        )
        if not messages and not json_:
            typer.echo("no new messages")

    _run(server, profile, action)


def history(
    address: Annotated[str, typer.Argument(help="A contact's address")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Print the whole conversation with a contact, oldest first."""

    async def action(client: Client) -> None:
        messages = await client.history(address)
        names = await _Names.of_contacts(client)
        _print_lines(
            map(_message_json, messages), (_message_text(m, names) for m in messages), json_
        )

    _run(server, profile, action)


def listen(
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
    ephemeral: Annotated[
        bool,
        typer.Option(
            "--ephemeral",
            help="Also print disappearing messages to this device, with their timers",
        ),
    ] = False,
) -> None:
    """Print messages as they arrive (first any not yet synced), until Ctrl-C."""

    async def action(client: Client) -> None:
        names = await _Names.of_contacts(client)
        if ephemeral:
            from openmessenger.cli import ephemeral as disappearing

            async def show(message: Message) -> None:
                await names.learn(message.sender)
                _print(_message_json(message), _message_text(message, names), json_)

            await disappearing.listen(client, names, show, as_json=json_)
            return
        async for message in client.listen():
            await names.learn(message.sender)
            _print(_message_json(message), _message_text(message, names), json_)

    _run(server, profile, action, interrupt_is_success=True)


# -- running -------------------------------------------------------------------


def profile_dir(profile: str) -> Path:
    """Where a profile's state lives: ``$OPENMESSENGER_HOME/profiles/<name>``, or the
    per-user data directory without OPENMESSENGER_HOME."""
    if not _PROFILE_NAME.match(profile):
        raise typer.BadParameter(
            "use letters, digits, '.', '_' and '-' (at most 64)", param_hint="--profile"
        )
    home = os.environ.get(HOME_ENV) or platformdirs.user_data_dir("openmessenger")
    return Path(home) / "profiles" / profile


def resolve_server(server: str | None, state_dir: Path) -> str:
    """--server (or OPENMESSENGER_SERVER), else the node the profile registered with."""
    if server:
        return server
    saved = StateStore(state_dir).load()
    return saved.server if saved is not None else DEFAULT_SERVER


def _run(
    server: str | None,
    profile: str,
    action: Callable[[Client], Awaitable[None]],
    *,
    interrupt_is_success: bool = False,
) -> None:
    state_dir = profile_dir(profile)

    async def with_client() -> None:
        async with Client(resolve_server(server, state_dir), state_dir) as client:
            await action(client)

    try:
        with warnings.catch_warnings(record=True) as raised:
            warnings.simplefilter("always", UserWarning)
            try:
                asyncio.run(with_client())
            finally:
                # Key changes are shown, never hidden: the user decides whether to verify.
                for warning in raised:
                    if issubclass(warning.category, (KeysChangedWarning, DeviceListChangedWarning)):
                        typer.echo(f"warning: {_printable(str(warning.message))}", err=True)
    except KeyboardInterrupt:
        raise typer.Exit(0 if interrupt_is_success else 130) from None
    except ServerUnreachableError as exc:
        _fail(str(exc), EXIT_UNREACHABLE)
    except RefusedError:
        _fail("refused", EXIT_ERROR)  # deliberately no reason: the node gives none
    except InvalidArgumentError as exc:
        _fail(f"invalid_input: {exc}", EXIT_ERROR)  # the node's wording for the same mistake
    except ClientError as exc:
        _fail(str(exc), EXIT_ERROR)


def _fail(message: str, exit_code: int) -> None:
    typer.echo(f"error: {_printable(message)}", err=True)
    raise typer.Exit(exit_code)


# -- output --------------------------------------------------------------------


def _print(obj: dict[str, Any], text: str, as_json: bool) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False) if as_json else text)


def _print_lines(objects: Iterable[dict[str, Any]], texts: Iterable[str], as_json: bool) -> None:
    for line in (json.dumps(o, ensure_ascii=False) for o in objects) if as_json else texts:
        typer.echo(line)


def _print_me(me: Me, as_json: bool) -> None:
    obj = {"address": me.address, "display_name": me.display_name, "device_id": me.device_id}
    text = f"{me.address}\t{_printable(me.display_name or '(no display name)')}"
    _print(obj, text, as_json)


def rfc3339(moment: datetime) -> str:
    """UTC with a Z and microseconds, as the node writes times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _local(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _optional_time(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def _issued_json(issued: IssuedCode) -> dict[str, Any]:
    return {
        "id": issued.id,
        "pass_code": issued.pass_code,
        "expires_at": rfc3339(issued.expires_at),
        "for": issued.for_address,
    }


def _issued_text(issued: IssuedCode) -> str:
    who = f"only for {issued.for_address}" if issued.for_address else "for anyone"
    return f"{issued.pass_code}\t(one use, {who}, expires {_local(issued.expires_at)})"


def _code_info_json(info: CodeInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "state": info.state,
        "for": info.for_address,
        "created_at": rfc3339(info.created_at),
        "expires_at": rfc3339(info.expires_at),
        "used_by": info.used_by,
        "used_at": _optional_time(info.used_at),
    }


def _code_info_text(info: CodeInfo) -> str:
    fields = [
        info.id,
        info.state,
        f"for {info.for_address or 'anyone'}",
        f"created {_local(info.created_at)}",
        f"expires {_local(info.expires_at)}",
    ]
    if info.used_by:
        fields.append(f"used by {info.used_by}")
    return "\t".join(fields)


def _contact_json(contact: Contact) -> dict[str, Any]:
    return {
        "address": contact.address,
        "display_name": contact.display_name,
        "conversation_id": contact.conversation_id,
        "connected_at": rfc3339(contact.connected_at),
        "accepts_messages": contact.accepts_messages,
        "peer_accepts_messages": contact.peer_accepts_messages,
        "encryption": contact.encryption,
    }


def _contact_text(contact: Contact) -> str:
    line = f"{_who(contact.address, contact.display_name)}\tsince {_local(contact.connected_at)}"
    return f"{line}\t{contact.encryption}"


def _message_json(message: Message) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": message.id,
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "from": message.sender,
        "sender_device": message.sender_device,
        "to": message.recipient,
        "text": message.text,
        "sent_at": rfc3339(message.sent_at),
        "status": message.status,
        "encryption": message.encryption,
        "error": message.error,
        "media_type": message.media_type,
        "metadata": message.metadata,
        "app": message.app.app_id if message.app is not None else None,
    }
    if message.position is not None:
        obj["position"] = message.position
    return obj


def _message_text(message: Message, names: _Names) -> str:
    sender = _who(message.sender, names.name_of(message.sender))
    text = _printable(message.text) if message.error is None else f"(unreadable: {message.error})"
    mark = " [transport-encrypted]" if message.encryption == "transport-encrypted" else ""
    if message.app is not None:
        mark += f" [via {_printable(message.app.app_id)}]"
    if str(message.recipient) == str(message.conversation_id):  # a group's (cli/groups.py)
        mark += f" [group {_printable(names.group_name(message.conversation_id))}]"
        if message.media_type == "group.member":  # the node's word: who joined, left, ...
            return f"[{_local(message.sent_at)}]{mark} * {text}"
    if message.media_type != "text":
        mark += f" [{_printable(message.media_type)}]"
    if message.edited_at is not None:  # history folds edits in (client/revisions.py)
        mark += " (edited)"
    return f"[{_local(message.sent_at)}]{mark} {sender}: {text}"


def _who(address: str, display_name: str | None) -> str:
    return f"{address} ({_printable(display_name)})" if display_name else address


def _printable(text: str) -> str:
    """Control characters escaped: a message must not drive the reader's terminal."""
    return "".join(
        ch.encode("unicode_escape").decode() if (ch < " " or "\x7f" <= ch <= "\x9f") else ch
        for ch in text
    )


class _Names:
    """Display names for message lines: contacts by address, and this device as 'you'."""

    def __init__(self, client: Client, known: dict[str, str | None] | None = None) -> None:
        self._client = client
        self._known = known or {}
        self.groups: dict[str, str] = {}
        """Group ids -> names, for the ``[group NAME]`` mark of group messages."""

    @classmethod
    async def of_contacts(cls, client: Client) -> _Names:
        names = cls(client)
        await names._refresh()
        return names

    def name_of(self, address: str) -> str | None:
        if address == self._client.address:
            return "you"
        return self._known.get(address)

    async def learn(self, address: str) -> None:
        """Look a sender up again when it is new (a contact made while listening)."""
        if address not in self._known and address != self._client.address:
            await self._refresh()
            self._known.setdefault(address, None)  # ask once per unknown sender

    def group_name(self, group_id: str) -> str:
        return self.groups.get(group_id, group_id)

    async def _refresh(self) -> None:
        self._known.update({c.address: c.display_name for c in await self._client.contacts()})
        self.groups.update({g.id: g.name for g in await self._client.groups()})
