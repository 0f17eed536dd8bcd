"""Pass codes attacked over the real API: silent refusal, expiry, single use,
the guessing bound, bound codes, and what is stored."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from openmessenger.core import passcodes as rules
from tests.support.api import ApiDevice, Dump, register, rows_mentioning
from tests.support.node import SettableClock


def wrong_codes(real: str, count: int) -> list[str]:
    """``count`` distinct well-formed codes that are not ``real`` (a worst-case guesser)."""
    return [c for c in (f"{n:06d}" for n in range(count + 1)) if c != real][:count]


async def assert_nothing_reached(owner: ApiDevice) -> None:
    contacts = (await owner.get("/v1/connections")).json()["contacts"]
    assert contacts == []
    assert await owner.sync() == []


async def test_a_node_that_cannot_be_reached_is_named_and_nothing_is_kept(
    http: httpx.AsyncClient,
) -> None:
    bob = await register(http)
    # No such host: the answer says the node was unreachable, not that a code was wrong.
    response = await bob.connect("4821937*unreachable.invalid", "123456")
    assert response.status_code == 502
    assert response.json()["code"] == "peer_unavailable"
    await assert_nothing_reached(bob)


async def test_every_refusal_looks_the_same(http: httpx.AsyncClient, clock: SettableClock) -> None:
    alice = await register(http, "Alice")
    mallory = await register(http)
    friend = await register(http)
    used = await alice.issue_code()
    assert (await friend.connect(alice.address, used)).status_code == 201
    expiring = await alice.issue_code()
    clock.advance(timedelta(seconds=rules.CODE_TTL_SECONDS))
    live = await alice.issue_code()

    attempts = {
        "wrong code": await mallory.connect(alice.address, wrong_codes(live, 1)[0]),
        "used code": await mallory.connect(alice.address, used),
        "expired code": await mallory.connect(alice.address, expiring),
        "unknown address": await mallory.connect("9999999999*localhost", live),
    }
    bodies = {name: (r.status_code, r.json()) for name, r in attempts.items()}
    assert len({repr(b) for b in bodies.values()}) == 1, bodies
    status, body = bodies["wrong code"]
    assert status == 403 and body["code"] == "refused"
    assert attempts["wrong code"].headers["content-type"].startswith("application/problem+json")
    # Alice hears nothing of it: her contacts are the friend alone, her stream is empty.
    contacts = (await alice.get("/v1/connections")).json()["contacts"]
    assert [c["address"] for c in contacts] == [friend.address]
    assert await alice.sync() == []
    # And the live code still works for the person it was given to.
    assert (await mallory.connect(alice.address, live)).status_code == 201


async def test_a_code_is_single_use(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bob, carol = await register(http), await register(http)
    code = await alice.issue_code()
    assert (await bob.connect(alice.address, code)).status_code == 201
    assert (await carol.connect(alice.address, code)).status_code == 403
    codes = (await alice.get("/v1/codes")).json()["codes"]
    assert [(c["state"], c["used_by"]) for c in codes] == [("used", bob.address)]


async def test_codes_expire_after_one_hour(http: httpx.AsyncClient, clock: SettableClock) -> None:
    alice, bob = await register(http), await register(http)
    code = await alice.issue_code()
    clock.advance(timedelta(seconds=rules.CODE_TTL_SECONDS - 1))
    still = await alice.issue_code()
    clock.advance(timedelta(seconds=1))
    assert (await bob.connect(alice.address, code)).json()["code"] == "refused"
    assert (await bob.connect(alice.address, still)).status_code == 201
    states = {c["state"] for c in (await alice.get("/v1/codes")).json()["codes"]}
    assert states == {"expired", "used"}


async def test_many_identities_cannot_beat_the_guessing_bound(http: httpx.AsyncClient) -> None:
    """Each failure from anyone spends the open codes' budget; at the bound they are withdrawn."""
    alice = await register(http)
    code = await alice.issue_code()
    attackers = [await register(http) for _ in range(4)]
    guesses = wrong_codes(code, rules.GUESS_BUDGET)
    for i, guess in enumerate(guesses):
        refused = await attackers[i % len(attackers)].connect(alice.address, guess)
        assert refused.json()["code"] == "refused"
    # Ten wrong guesses were checked against the code; the next check, even of
    # the right code, is not made: the chance to guess stayed at 10 / 10**6.
    late = await attackers[0].connect(alice.address, code)
    assert late.json()["code"] == "refused"
    states = [c["state"] for c in (await alice.get("/v1/codes")).json()["codes"]]
    assert states == ["withdrawn"]
    await assert_nothing_reached(alice)


async def test_the_bound_covers_every_live_code_at_once(http: httpx.AsyncClient) -> None:
    alice, attacker, friend = await register(http), await register(http), await register(http)
    codes = [await alice.issue_code() for _ in range(5)]
    taken = set(codes)
    guesses = [c for c in wrong_codes("", 20) if c not in taken]
    # Five live codes: a guess hits any of them, so two failures spend the budget.
    for guess in guesses[:2]:
        assert (await attacker.connect(alice.address, guess)).status_code == 403
    assert (await friend.connect(alice.address, codes[0])).status_code == 403
    states = {c["state"] for c in (await alice.get("/v1/codes")).json()["codes"]}
    assert states == {"withdrawn"}


async def test_a_bound_code_survives_any_attack(http: httpx.AsyncClient) -> None:
    alice, friend = await register(http), await register(http)
    attackers = [await register(http) for _ in range(3)]
    bound = (await alice.post("/v1/codes", {"for": friend.address})).json()
    # Others cannot use it even knowing the digits, and their failures do not withdraw it.
    for attacker in attackers:
        assert (await attacker.connect(alice.address, bound["pass_code"])).status_code == 403
        for guess in wrong_codes(bound["pass_code"], 2 * rules.GUESS_BUDGET):
            assert (await attacker.connect(alice.address, guess)).status_code == 403
    response = await friend.connect(alice.address, bound["pass_code"])
    assert response.status_code == 201, response.text
    assert response.json()["address"] == alice.address
    assert bound["for"] == friend.address


async def test_the_bound_address_itself_is_held_to_the_bound(http: httpx.AsyncClient) -> None:
    alice, friend = await register(http), await register(http)
    code = await alice.issue_code(for_address=friend.address)
    for guess in wrong_codes(code, rules.GUESS_BUDGET):
        assert (await friend.connect(alice.address, guess)).status_code == 403
    assert (await friend.connect(alice.address, code)).status_code == 403


async def test_live_codes_are_capped(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    for _ in range(rules.MAX_LIVE_CODES):
        await alice.issue_code()
    over = await alice.post("/v1/codes", {})
    assert over.status_code == 429
    assert over.json()["code"] == "limit_exceeded"
    # Withdrawing one makes room again.
    first = (await alice.get("/v1/codes")).json()["codes"][0]
    assert (
        await alice.http.delete(f"/v1/codes/{first['id']}", headers=alice.auth)
    ).status_code == 204
    assert (await alice.post("/v1/codes", {})).status_code == 201


async def test_codes_and_tokens_are_stored_only_as_hmacs(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice = await register(http)
    bob = await register(http)
    codes = [await alice.issue_code() for _ in range(3)]
    await bob.connect(alice.address, codes[0])
    stored = await dump()
    for secret in [*codes, alice.token, bob.token]:
        assert rows_mentioning(stored, secret) == []
    assert len(stored["pass_codes"]) == 3
    assert len(stored["device_tokens"]) == 2


async def test_refusals_store_nothing_the_target_could_see(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice, mallory = await register(http), await register(http)
    code = await alice.issue_code()
    before = await dump()
    await mallory.connect(alice.address, wrong_codes(code, 1)[0])
    await mallory.send(alice.address, "let me in")
    after = await dump()
    for table in ("connections", "conversations", "messages", "device_streams"):
        assert after[table] == before[table] == []
    assert rows_mentioning(after, "let me in") == []


async def test_concurrent_redemptions_of_one_code_connect_once(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    code = await alice.issue_code()
    racers = [await register(http) for _ in range(5)]
    results = await asyncio.gather(*(r.connect(alice.address, code) for r in racers))
    assert sorted(r.status_code for r in results) == [201, 403, 403, 403, 403]
    assert len((await alice.get("/v1/connections")).json()["contacts"]) == 1
