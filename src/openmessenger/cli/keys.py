"""End-to-end commands: ``link``, ``devices``, ``backup``, ``verify``.

Thin like the other device commands: parse, call the SDK, print. docs/cli.md
and docs/encryption.md describe what they print and what to compare.
"""

from __future__ import annotations

from typing import Annotated

import typer

from openmessenger.cli.device import (
    DEFAULT_PROFILE,
    JsonOption,
    ProfileOption,
    ServerOption,
    _local,
    _print,
    _print_lines,
    _run,
    profile_dir,
    rfc3339,
)
from openmessenger.client import Client
from openmessenger.client.models import OwnDevice

devices_app = typer.Typer(help="This account's devices: list, approve, revoke, replace.")
backup_app = typer.Typer(help="The encrypted key backup and the recovery key.")


def register(app: typer.Typer) -> None:
    app.command()(link)
    app.command()(verify)
    app.add_typer(devices_app, name="devices")
    app.add_typer(backup_app, name="backup")
    devices_app.command("list")(list_devices)
    devices_app.command("approve")(approve)
    devices_app.command("revoke")(revoke)
    devices_app.command("replace")(replace)
    devices_app.command("rotation")(rotation)
    backup_app.command("setup")(setup_backup)
    backup_app.command("upload")(upload_backup)
    backup_app.command("restore")(restore)


def link(
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """On a new device: ask to join your account. Approve the code shown here on a
    device you already have (``openmessenger devices approve CODE``)."""

    async def action(client: Client) -> None:
        request = await client.request_link()
        _print(
            {
                "code": request.code,
                "fingerprint": request.fingerprint,
                "expires_at": rfc3339(request.expires_at),
            },
            f"link code: {request.code}\n"
            "approve it on a device of your account: "
            f"openmessenger devices approve {request.code}\n"
            f"this device's fingerprint: {request.fingerprint}\nwaiting for approval...",
            json_,
        )
        me = await client.wait_for_link()
        _print(
            {"address": me.address, "device_id": me.device_id},
            f"linked: this device is now {me.address}",
            json_,
        )

    _run(server, profile, action)


def list_devices(
    server: ServerOption = None, profile: ProfileOption = DEFAULT_PROFILE, json_: JsonOption = False
) -> None:
    """List this account's devices with their fingerprints."""

    async def action(client: Client) -> None:
        found = await client.devices()
        _print_lines(map(_device_json, found), map(_device_text, found), json_)

    _run(server, profile, action)


def approve(
    code: Annotated[str, typer.Argument(help="The link code the new device shows")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Approve a new device's link request: it joins this account and can read its history."""

    async def action(client: Client) -> None:
        device = await client.approve_link(code)
        _print(_device_json(device), f"approved {device.device_id}\t{device.fingerprint}", json_)

    _run(server, profile, action)


def revoke(
    device_id: Annotated[str, typer.Argument(help="The device to remove (see devices list)")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Revoke a device: it receives nothing new and cannot read what is sent after."""

    async def action(client: Client) -> None:
        await client.revoke_device(device_id)
        _print({"device_id": device_id, "revoked": True}, f"revoked {device_id}", json_)

    _run(server, profile, action)


def replace(
    new_profile: Annotated[str, typer.Argument(help="The profile the new device lives in")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Rotate this device's identity: link a new device in NEW_PROFILE, then revoke this one."""

    async def action(client: Client) -> None:
        old = client.device_id
        new = await client.replace_device(profile_dir(new_profile))
        try:
            me = await new.whoami()
        finally:
            await new.aclose()
        _print(
            {"address": me.address, "device_id": me.device_id, "revoked": old},
            f"replaced {old} with {me.device_id} (profile {new_profile})",
            json_,
        )

    _run(server, profile, action)


def rotation(
    messages: Annotated[
        int, typer.Option(min=1, help="A new session after this many messages")
    ] = 100,
    seconds: Annotated[int, typer.Option(min=60, help="... or after this many seconds")] = 7
    * 24
    * 3600,
    account: Annotated[
        bool, typer.Option("--account", help="For every device of the account, not just this one")
    ] = False,
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Set how often message keys rotate (the stricter of device and account applies)."""

    async def action(client: Client) -> None:
        if account:
            await client.set_account_rotation(messages=messages, seconds=seconds)
        else:
            await client.set_rotation(messages=messages, seconds=seconds)
        scope = "account" if account else "device"
        _print(
            {"scope": scope, "messages": messages, "seconds": seconds},
            f"{scope}: new message keys after {messages} messages or {seconds} s",
            json_,
        )

    _run(server, profile, action)


def setup_backup(
    server: ServerOption = None, profile: ProfileOption = DEFAULT_PROFILE, json_: JsonOption = False
) -> None:
    """Make a recovery key and back the account's keys up under it. Write the key
    down: it is shown once, and the node never has it."""

    async def action(client: Client) -> None:
        key = await client.setup_backup()
        _print(
            {"recovery_key": key}, f"recovery key (write it down, it is shown once):\n{key}", json_
        )

    _run(server, profile, action)


def upload_backup(
    server: ServerOption = None, profile: ProfileOption = DEFAULT_PROFILE, json_: JsonOption = False
) -> None:
    """Back up the keys this device received since the last upload."""

    async def action(client: Client) -> None:
        count = await client.back_up()
        _print({"uploaded": count}, f"uploaded {count} keys", json_)

    _run(server, profile, action)


def restore(
    address: Annotated[str, typer.Argument(help="Your account's address")],
    recovery_key: Annotated[
        str,
        typer.Option(
            "--recovery-key",
            envvar="OPENMESSENGER_RECOVERY_KEY",
            prompt=True,
            hide_input=True,
            help="The recovery key from backup setup",
        ),
    ],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """On a new device, after losing every other: take the account back with its recovery key."""

    async def action(client: Client) -> None:
        me = await client.restore(address, recovery_key)
        _print(
            {"address": me.address, "device_id": me.device_id},
            f"restored: this device is now {me.address}",
            json_,
        )

    _run(server, profile, action)


def verify(
    address: Annotated[str, typer.Argument(help="A contact's address")],
    server: ServerOption = None,
    profile: ProfileOption = DEFAULT_PROFILE,
    json_: JsonOption = False,
) -> None:
    """Show the safety number to compare with the contact (in person or by phone)."""

    async def action(client: Client) -> None:
        number = await client.safety_number(address)
        _print(
            {"address": address, "safety_number": number},
            f"safety number with {address}:\n{number}\n"
            "compare it with theirs; if it differs, someone is in between",
            json_,
        )

    _run(server, profile, action)


def _device_json(device: OwnDevice) -> dict[str, object]:
    return {
        "device_id": device.device_id,
        "fingerprint": device.fingerprint,
        "created_at": rfc3339(device.created_at),
        "current": device.current,
        "signed": device.signed,
    }


def _device_text(device: OwnDevice) -> str:
    marks = [
        m for m, on in (("this device", device.current), ("UNSIGNED", not device.signed)) if on
    ]
    suffix = f"\t({', '.join(marks)})" if marks else ""
    return f"{device.device_id}\t{device.fingerprint}\tsince {_local(device.created_at)}{suffix}"
