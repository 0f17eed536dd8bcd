"""``openmessenger admin accounts``: the operator shows an account and changes its
plan, on the node's host (its database) or remotely with the operator token; the
node enforces the new plan's limits at once. And ``openmessenger policy``: what
a user sees of it, and their stricter-only override."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from openmessenger.cli.main import app as cli
from openmessenger.core.policies import Plan
from openmessenger.plan_settings import DEFAULTS
from openmessenger.services.policies import DIRECT_CACHE_SECONDS
from openmessenger.settings import Settings
from tests.support.api import ApiDevice, connected_pair

OPERATOR_TOKEN = "operator-token-for-accounts-tests-0123456789"
# Over the free plan's 64 KiB, under the 64 Ki characters any text may have.
BIG = "é" * 35_000


@pytest.fixture
def node_settings(node_settings: Settings) -> Settings:
    return node_settings.model_copy(update={"operator_token": SecretStr(OPERATOR_TOKEN)})


@pytest.fixture
def here(node_settings: Settings) -> list[str]:
    assert node_settings.database_url is not None
    return ["--data-dir", str(node_settings.data_dir), "--database-url", node_settings.database_url]


@pytest.fixture
def remote(node_url: str) -> list[str]:
    return ["--url", node_url, "--operator-token", OPERATOR_TOKEN]


async def admin(*args: str, exit_code: int = 0) -> Result:
    """``openmessenger admin ARGS`` (in a thread: the command runs its own event loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["admin", *args])
    assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
    return result


async def sends(device: ApiDevice, to: str, body: str) -> int:
    return (await device.send(to, body)).status_code


async def soon_sends(device: ApiDevice, to: str, body: str, status: int) -> int:
    """The status a send gets once a plan changed elsewhere has reached the node:
    within its policy cache time (``DIRECT_CACHE_SECONDS``), retried until then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DIRECT_CACHE_SECONDS + 5
    while (found := await sends(device, to, body)) != status and loop.time() < deadline:
        await asyncio.sleep(0.1)
    return found


@pytest.mark.parametrize("where", ["here", "remote"])
async def test_the_operator_changes_a_plan_and_the_node_enforces_it(
    http: httpx.AsyncClient, where: str, request: pytest.FixtureRequest
) -> None:
    flags: list[str] = request.getfixturevalue(where)
    alice, bob = await connected_pair(http)
    assert await sends(alice, bob.address, BIG) == 422

    shown = json.loads((await admin("accounts", "show", alice.address, "--json", *flags)).stdout)
    free = DEFAULTS[Plan.FREE]
    assert shown == {
        "address": alice.address,
        "kind": "anonymous",
        "plan": "free",
        "policy": {
            "retention_seconds": free.retention_seconds,
            "max_participants": free.max_participants,
            "max_message_bytes": free.max_message_bytes,
            "message_rate": str(free.message_rate),
        },
    }
    text = (await admin("accounts", "show", alice.address, *flags)).stdout
    assert text.startswith(f"{alice.address}\tanonymous\tplan free\n")
    assert "retention: forever\n" in text and "max message bytes: 65536\n" in text

    for who in (alice, bob):
        done = await admin("accounts", "set-plan", who.address, "subscription", *flags)
        assert done.stdout.startswith(f"{who.address}\tanonymous\tplan subscription\n")
        assert "retention: forever\n" in done.stdout
    assert (await alice.get("/v1/account/policy")).json()["plan"] == "subscription"
    assert await soon_sends(alice, bob.address, BIG, 201) == 201

    back = await admin("accounts", "set-plan", bob.address, "free", "--json", *flags)
    assert json.loads(back.stdout)["plan"] == "free"
    assert await soon_sends(bob, alice.address, BIG, 422) == 422


@pytest.mark.parametrize("where", ["here", "remote"])
async def test_bad_input_is_refused_alike_here_and_remotely(
    http: httpx.AsyncClient, where: str, request: pytest.FixtureRequest
) -> None:
    flags: list[str] = request.getfixturevalue(where)
    alice, _ = await connected_pair(http)
    wrong_plan = await admin("accounts", "set-plan", alice.address, "gold", *flags, exit_code=2)
    assert "PLAN" in wrong_plan.stderr and "free, subscription, usage" in wrong_plan.stderr
    bad_address = await admin("accounts", "show", "not-an-address", *flags, exit_code=2)
    assert "ADDRESS" in bad_address.stderr
    unknown = await admin("accounts", "show", "9999999*localhost", *flags, exit_code=1)
    assert unknown.stderr.startswith("error: account_not_found: ")
    assert (await alice.get("/v1/account/policy")).json()["plan"] == "free"


async def test_a_wrong_operator_token_changes_nothing(
    http: httpx.AsyncClient, node_url: str
) -> None:
    alice, _ = await connected_pair(http)
    refused = await admin(
        "accounts", "set-plan", alice.address, "usage",
        "--url", node_url, "--operator-token", OPERATOR_TOKEN[:-1] + "X",
        exit_code=1,
    )  # fmt: skip
    assert refused.stderr.startswith("error: operator_token_invalid: ")
    assert (await alice.get("/v1/account/policy")).json()["plan"] == "free"


# --- what a user sees ------------------------------------------------------------------------


def address_of(run: Callable[..., Result], profile: str) -> str:
    return str(json.loads(run(profile, "whoami", "--json").stdout)["address"])


def test_a_user_sees_their_plan_and_tightens_a_conversation(run: Callable[..., Result]) -> None:
    alice = address_of(run, "alice")
    bob = address_of(run, "bob")
    code = json.loads(run("alice", "code", "--json").stdout)["pass_code"]
    run("bob", "connect", alice, code)

    mine = json.loads(run("alice", "policy", "--json").stdout)
    assert mine["plan"] == "free" and mine["address"] == alice
    assert mine["policy"]["max_message_bytes"] == DEFAULTS[Plan.FREE].max_message_bytes
    assert "plan free" in run("alice", "policy").stdout

    tightened = json.loads(
        run("bob", "policy", alice, "--max-message-bytes", "10", "--json").stdout
    )
    assert tightened["policy"]["max_message_bytes"] == 10
    assert tightened["override"]["max_message_bytes"] == 10
    refused = run("alice", "send", bob, "more than ten bytes", exit_code=1)
    assert "message_too_large" in refused.stderr
    # Looser than the plan: refused, naming the field.
    looser = run("bob", "policy", alice, "--message-rate", "100000/second", exit_code=1)
    assert "policy_not_stricter" in looser.stderr and "message_rate" in looser.stderr
    # Bob lifts his own override; Alice's conversation view shows it.
    run("bob", "policy", alice, "--clear")
    seen = json.loads(run("alice", "policy", bob, "--json").stdout)
    assert seen["policy"]["max_message_bytes"] == DEFAULTS[Plan.FREE].max_message_bytes
    run("alice", "send", bob, "more than ten bytes")
    # Not a contact: no conversation to show.
    stranger = run("alice", "policy", "1234567*localhost", exit_code=1)
    assert "not connected" in stranger.stderr


def test_an_override_without_a_conversation_is_bad_usage(run: Callable[..., Result]) -> None:
    result = run("alice", "policy", "--max-message-bytes", "10", exit_code=2)
    assert "ADDRESS or --conversation" in result.stderr
