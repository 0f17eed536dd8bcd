"""``openmessenger admin accounts``: an account of the node and its plan (free,
subscription, usage); locally or with ``--url`` (see admin.py).

With ``--json`` each command prints the operator API's shape
(protocol/policies_api.py ``AdminAccountOut``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

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
    run_operator,
    target,
)
from openmessenger.core.errors import InvalidInput
from openmessenger.core.ids import parse_address
from openmessenger.core.policies import Plan, parse_plan
from openmessenger.protocol.policies_api import AdminAccountOut, PolicyOut

if TYPE_CHECKING:
    from openmessenger.services.policies import PolicyService
    from openmessenger.settings import Settings
    from openmessenger.storage.database import Database

accounts = typer.Typer(help="Accounts of the node: their plan and the limits it gives.")

AddressArgument = Annotated[
    str, typer.Argument(metavar="ADDRESS", help="An address of this node, e.g. 4821937*example.org")
]
PLANS = ", ".join(p.value for p in Plan)


def _address(value: str) -> str:
    """Checked here, so that local and remote runs refuse a typo alike (exit 2)."""
    try:
        return parse_address(value, field="address").address
    except InvalidInput as exc:
        raise typer.BadParameter(exc.reason, param_hint="ADDRESS") from None


def _plan(value: str) -> str:
    try:
        return parse_plan(value).value
    except InvalidInput as exc:
        raise typer.BadParameter(exc.reason, param_hint="PLAN") from None


def describe(policy: PolicyOut) -> str:
    """The limits, one ``name: value`` a line."""
    retention = (
        "forever" if policy.retention_seconds is None else _duration(policy.retention_seconds)
    )
    return "\n".join(
        [
            f"retention: {retention}",
            f"max participants: {policy.max_participants}",
            f"max message bytes: {policy.max_message_bytes}",
            f"message rate: {policy.message_rate} per participant",
        ]
    )


def _duration(seconds: int) -> str:
    for unit, size in (("days", 86_400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


def _text(found: AdminAccountOut) -> str:
    return f"{found.address}\t{found.kind}\tplan {found.plan}\n{describe(found.policy)}"


@accounts.command()
def show(
    address: AddressArgument,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """An account's kind, plan and the limits the plan gives.

    JSON: {"address": ..., "kind": ..., "plan": "free", "policy": {...}}."""
    checked = _address(address)
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    found = run_operator(where, lambda node: node.account(checked))
    emit(found, _text(found), json_)


@accounts.command("set-plan")
def set_plan(
    address: AddressArgument,
    plan: Annotated[str, typer.Argument(metavar="PLAN", help=f"One of {PLANS}")],
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    operator_token: TokenOption = None,
    operator_token_file: TokenFileOption = None,
    ca_file: CaFileOption = None,
    json_: JsonOption = False,
) -> None:
    """Put an account on PLAN; its limits apply from the next message.

    JSON: the account as ``show`` prints it."""
    checked = _address(address)
    chosen = _plan(plan)
    where = target(
        data_dir, database_url, config, url, operator_token, operator_token_file, ca_file
    )
    found = run_operator(where, lambda node: node.set_plan(checked, chosen))
    emit(found, _text(found), json_)


# --- the local backend (LocalOperator calls these) -----------------------------------


def _service(database: Database, settings: Settings) -> PolicyService:
    from openmessenger.federation.rate_limits import SlidingWindowLimiter
    from openmessenger.services.policies import PolicyService
    from openmessenger.wiring import SystemClock

    return PolicyService(
        database.uow, SystemClock(), settings.plans.policies(), SlidingWindowLimiter()
    )


async def local_account(database: Database, settings: Settings, address: str) -> AdminAccountOut:
    from openmessenger.api.render_policies import admin_account

    return admin_account(await _service(database, settings).account(address))


async def local_set_plan(
    database: Database, settings: Settings, address: str, plan: str
) -> AdminAccountOut:
    from openmessenger.api.render_policies import admin_account

    return admin_account(await _service(database, settings).set_plan(address, plan))
