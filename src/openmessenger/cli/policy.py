"""``openmessenger policy``: your plan's limits, a conversation's policy, and your
stricter-only override of it (docs/cli.md, docs/conversations.md "Policies").
Thin like the other device commands: parse, call the SDK, print."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from openmessenger.cli.device import DEFAULT_PROFILE, JsonOption, ProfileOption, ServerOption
from openmessenger.cli.device import _print as print_result
from openmessenger.cli.device import _run as run_client
from openmessenger.client import Client, NotAContactError
from openmessenger.client.policies import ConversationPolicy, Limits


def register(app: typer.Typer) -> None:
    app.command("policy")(policy)


def policy(
    address: Annotated[
        str | None,
        typer.Argument(help="A contact: show (or override) your conversation's policy with it"),
    ] = None,
    conversation: Annotated[
        str | None,
        typer.Option(help="A conversation by id instead (e.g. a group's)", show_default=False),
    ] = None,
    retention_seconds: Annotated[
        int | None, typer.Option(help="Keep history at most this long", show_default=False)
    ] = None,
    max_message_bytes: Annotated[
        int | None, typer.Option(help="Take bodies of at most this size", show_default=False)
    ] = None,
    message_rate: Annotated[
        str | None,
        typer.Option(help='Per participant, e.g. "10/minute"', show_default=False),
    ] = None,
    max_participants: Annotated[
        int | None, typer.Option(help="At most this many participants", show_default=False)
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove your override")] = False,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Show your plan and its limits; with ADDRESS (or --conversation) that
    conversation's policy. With limits given, replace your override of it (each
    only ever stricter than the plans); --clear removes your override."""
    limits = {
        "retention_seconds": retention_seconds,
        "max_message_bytes": max_message_bytes,
        "message_rate": message_rate,
        "max_participants": max_participants,
    }
    overriding = any(value is not None for value in limits.values())
    if address is not None and conversation is not None:
        raise typer.BadParameter("give ADDRESS or --conversation, not both")
    if (overriding or clear) and address is None and conversation is None:
        raise typer.BadParameter("an override needs ADDRESS or --conversation")
    if overriding and clear:
        raise typer.BadParameter("--clear takes no limits")

    async def action(client: Client) -> None:
        if address is None and conversation is None:
            mine = await client.policy()
            print_result(
                {"address": mine.address, "plan": mine.plan, "policy": asdict(mine.limits)},
                f"{mine.address}: plan {mine.plan}\n{_describe(mine.limits)}",
                json_,
            )
            return
        conversation_id = conversation or await _conversation_with(client, address or "")
        if clear:
            found = await client.clear_conversation_policy(conversation_id)
        elif overriding:
            found = await client.set_conversation_policy(
                conversation_id,
                retention_seconds=retention_seconds,
                max_message_bytes=max_message_bytes,
                message_rate=message_rate,
                max_participants=max_participants,
            )
        else:
            found = await client.conversation_policy(conversation_id)
        print_result(_json(found), _text(found), json_)

    run_client(server, profile, action)


async def _conversation_with(client: Client, address: str) -> str:
    for contact in await client.contacts():
        if contact.address == address:
            return contact.conversation_id
    raise NotAContactError(address)


def _describe(limits: Limits) -> str:
    retention = "forever" if limits.retention_seconds is None else f"{limits.retention_seconds} s"
    return "\n".join(
        [
            f"retention: {retention}",
            f"max participants: {limits.max_participants}",
            f"max message bytes: {limits.max_message_bytes}",
            f"message rate: {limits.message_rate} per participant",
        ]
    )


def _json(found: ConversationPolicy) -> dict[str, object]:
    return {
        "conversation_id": found.conversation_id,
        "policy": asdict(found.limits),
        "plans": asdict(found.plans),
        "override": asdict(found.override),
    }


def _text(found: ConversationPolicy) -> str:
    mine = {k: v for k, v in asdict(found.override).items() if v is not None}
    override = ", ".join(f"{k}={v}" for k, v in mine.items()) or "none"
    return (
        f"conversation {found.conversation_id}\n{_describe(found.limits)}\n"
        f"your override: {override}"
    )
