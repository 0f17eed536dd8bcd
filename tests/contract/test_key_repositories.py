"""The end-to-end storage ports (``tx.keys``, ``tx.backups``, ``tx.link_requests``,
``tx.to_device``) on every backend: a SQLite file and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from openmessenger.core.ids import DeviceId
from openmessenger.core.records import (
    ClaimedOneTimeKey,
    Device,
    KeyCounts,
    LinkRequest,
    SignedOneTimeKey,
)
from openmessenger.services.ports import UnitOfWork
from openmessenger.storage.database import Database
from tests.contract.test_repositories import (
    _until_blocked,
    accepted,
    connect,
    make_account,
    make_device,
    new_ed25519_key,
    new_hmac,
    new_id,
    now,
    send_request,
)

SIGNATURE = "s" * 86


@pytest.fixture
def uow(database: Database) -> UnitOfWork:
    return database.uow


def otk(key_id: str, key: str | None = None) -> SignedOneTimeKey:
    return SignedOneTimeKey(key_id, key or new_ed25519_key()[:43], SIGNATURE)


async def lone_device(uow: UnitOfWork) -> Device:
    async with uow() as tx:
        account = await make_account(tx)
        device = await make_device(tx, account.id)
        await tx.commit()
    return device


async def device_with_keys(uow: UnitOfWork, count: int, *, fallback: bool = True) -> Device:
    device = await lone_device(uow)
    async with uow() as tx:
        await tx.keys.add_one_time_keys(device.id, [otk(f"k{i:03}") for i in range(count)])
        if fallback:
            await tx.keys.set_fallback_key(device.id, otk("fb"))
        await tx.commit()
    return device


# --- one-time keys ---------------------------------------------------------------


async def test_keys_are_counted_looked_up_and_the_fallback_key_replaced(uow: UnitOfWork) -> None:
    device = await lone_device(uow)
    first, second = otk("AAAA"), otk("AAAB")
    async with uow() as tx:
        assert await tx.keys.counts(device.id) == KeyCounts(0, fallback_key=False)
        await tx.keys.add_one_time_keys(device.id, [first, second])
        # A fallback key may share its id with a one-time key (vodozemac counts apart).
        await tx.keys.set_fallback_key(device.id, otk("AAAA"))
        newer_fallback = otk("AAAC")
        await tx.keys.set_fallback_key(device.id, newer_fallback)
        await tx.commit()
    async with uow() as tx:
        assert await tx.keys.counts(device.id) == KeyCounts(2, fallback_key=True)
        assert await tx.keys.one_time_keys(device.id, ["AAAA", "AAAC", "nope"]) == {
            "AAAA": first.key
        }
        assert await tx.keys.one_time_keys(device.id, []) == {}
        popped = [await tx.keys.claim(device.id) for _ in range(2)]
        claimed = await tx.keys.claim(device.id)
    assert sorted((c.key_id, c.fallback) for c in popped if c) == [
        ("AAAA", False),
        ("AAAB", False),
    ]
    assert claimed == ClaimedOneTimeKey(
        newer_fallback.key_id, newer_fallback.key, SIGNATURE, fallback=True
    )


async def test_a_claim_pops_one_key_then_the_fallback_key_stays(uow: UnitOfWork) -> None:
    device = await device_with_keys(uow, 3)
    other = await device_with_keys(uow, 1, fallback=False)
    async with uow() as tx:
        claimed = [await tx.keys.claim(device.id) for _ in range(5)]
        await tx.commit()
    popped = [c for c in claimed if c is not None and not c.fallback]
    assert sorted(c.key_id for c in popped) == ["k000", "k001", "k002"]
    assert [c.key_id for c in claimed[3:] if c is not None and c.fallback] == ["fb", "fb"]
    async with uow() as tx:
        assert await tx.keys.counts(device.id) == KeyCounts(0, fallback_key=True)
        # Another device's keys are its own.
        assert await tx.keys.counts(other.id) == KeyCounts(1, fallback_key=False)
        only = await tx.keys.claim(other.id)
        assert only is not None and only.key_id == "k000"
        assert await tx.keys.claim(other.id) is None


async def test_concurrent_claims_never_hand_out_one_key_twice(
    uow: UnitOfWork, backend: str
) -> None:
    keys, claimers = 6, 10
    device = await device_with_keys(uow, keys)
    # On PostgreSQL every claimer holds its transaction open until all have
    # claimed: they truly overlap. SQLite runs one transaction at a time.
    barrier = asyncio.Barrier(claimers) if backend == "postgres" else None

    async def claim_one() -> ClaimedOneTimeKey | None:
        async with uow() as tx:
            claimed = await tx.keys.claim(device.id)
            if barrier is not None:
                await barrier.wait()
            await tx.commit()
        return claimed

    results = await asyncio.gather(*(claim_one() for _ in range(claimers)))
    one_time = [r.key_id for r in results if r is not None and not r.fallback]
    assert sorted(one_time) == [f"k{i:03}" for i in range(keys)]
    assert [r.key_id for r in results if r is not None and r.fallback] == ["fb"] * (claimers - keys)
    async with uow() as tx:
        assert await tx.keys.counts(device.id) == KeyCounts(0, fallback_key=True)


async def test_many_concurrent_claims_in_separate_transactions_share_nothing(
    uow: UnitOfWork,
) -> None:
    device = await device_with_keys(uow, 40, fallback=False)

    async def claim_one() -> ClaimedOneTimeKey | None:
        async with uow() as tx:
            claimed = await tx.keys.claim(device.id)
            await tx.commit()
        return claimed

    results = await asyncio.gather(*(claim_one() for _ in range(40)))
    assert sorted(r.key_id for r in results if r is not None) == [f"k{i:03}" for i in range(40)]


# --- devices: keys, revocation ------------------------------------------------------


async def test_sealing_keys_of_live_devices_by_account(uow: UnitOfWork) -> None:
    async with uow() as tx:
        alice, bob, carol = [await make_account(tx) for _ in range(3)]
        a1, a2, a3 = [await make_device(tx, alice.id) for _ in range(3)]
        b1 = await make_device(tx, bob.id)
        c1 = await make_device(tx, carol.id)
        for device in (a1, a2, b1, c1):
            await tx.keys.set_sealing_key(device.id, f"key-of-{device.id}"[:43], SIGNATURE)
        await tx.keys.revoke(a2.id, now())
        await tx.commit()
    async with uow() as tx:
        found = await tx.keys.sealing_keys([alice.id, bob.id, alice.id])
        public = {k.device_id: k for k in await tx.keys.public_keys(alice.id)}
        assert await tx.keys.sealing_keys([]) == {}
    # a2 is revoked, a3 has no sealing key, carol was not asked for.
    assert found == {
        alice.id: {a1.id: f"key-of-{a1.id}"[:43]},
        bob.id: {b1.id: f"key-of-{b1.id}"[:43]},
    }
    assert set(public) == {a1.id, a3.id}
    assert public[a1.id].sealing_key_signature == SIGNATURE
    assert public[a3.id].sealing_key is None
    assert public[a1.id].ed25519_key == a1.ed25519_key


async def test_a_revoked_device_loses_tokens_keys_messages_and_new_stream_entries(
    uow: UnitOfWork,
) -> None:
    async with uow() as tx:
        alice, bob = await make_account(tx), await make_account(tx)
        alice_device = await make_device(tx, alice.id)
        bob_phone, bob_laptop = await make_device(tx, bob.id), await make_device(tx, bob.id)
        await connect(tx, alice, bob)
        token = new_hmac()
        await tx.devices.add_token(bob_laptop.id, token, now())
        await tx.keys.add_one_time_keys(bob_laptop.id, [otk("k1")])
        await tx.keys.set_fallback_key(bob_laptop.id, otk("fb"))
        await tx.to_device.add(bob_phone.id, "sender-key", [(bob_laptop.id, "{}")], now())
        await tx.commit()

    async with uow() as tx:
        assert await tx.keys.revoke(bob_laptop.id, now())
        assert not await tx.keys.revoke(bob_laptop.id, now())  # once
        await tx.commit()

    async with uow() as tx:
        assert await tx.devices.by_token(token) is None
        assert await tx.devices.by_ed25519_key(bob_laptop.ed25519_key) is None
        assert await tx.keys.key_taken(bob_laptop.ed25519_key)  # its key stays taken
        assert await tx.devices.ids_of_account(bob.id) == [bob_phone.id]
        assert [d.id for d in await tx.keys.devices(bob.id)] == [bob_phone.id]
        assert await tx.keys.device(bob_laptop.id) is None
        assert await tx.keys.device(bob_phone.id) == bob_phone
        assert await tx.keys.counts(bob_laptop.id) == KeyCounts(0, fallback_key=False)
        assert await tx.keys.claim(bob_laptop.id) is None
        assert await tx.to_device.after(bob_laptop.id, 0, 10) == []
        assert not await tx.keys.lock_device(bob_laptop.id)
        assert await tx.keys.lock_device(bob_phone.id)
        (result,) = await tx.messages.append_batch(
            [send_request(alice, alice_device, bob.address, "after the revocation")]
        )
        await tx.commit()
    assert [e.device_id for e in result.events] == [bob_phone.id]
    async with uow() as tx:
        assert await tx.messages.stream(bob_laptop.id, 0, 10) == []
        assert [e.message for e in await tx.messages.stream(bob_phone.id, 0, 10)] == [
            accepted(result)
        ]


# --- account keys, backup -------------------------------------------------------------


async def test_the_device_list_is_compared_and_set_by_version(uow: UnitOfWork) -> None:
    async with uow() as tx:
        account = await make_account(tx)
        assert await tx.keys.account_keys(account.id) is None
        assert not await tx.keys.set_recovery_auth_key(account.id, "r" * 43)
        put = tx.keys.put_device_list

        async def put_list(signing_key: str, version: int, expected: int | None) -> bool:
            text = f'{{"v":{version}}}'
            return await put(
                account.id,
                signing_key=signing_key,
                device_list=text,
                version=version,
                expected_version=expected,
            )

        assert await put_list("S" * 43, 1, None)
        # A second "first" list, or one built on a version that is gone, loses.
        assert not await put_list("S" * 43, 1, None)
        assert not await put_list("S" * 43, 5, 4)
        assert await put_list("T" * 43, 2, 1)
        assert await tx.keys.set_recovery_auth_key(account.id, "r" * 43)
        await tx.commit()
    async with uow() as tx:
        keys = await tx.keys.account_keys(account.id, for_update=True)
    assert keys is not None
    assert (keys.signing_key, keys.device_list, keys.device_list_version) == (
        "S" * 43,  # set by the first list only
        '{"v":2}',
        2,
    )
    assert keys.recovery_auth_key == "r" * 43


async def test_backup_entries_are_upserted_listed_and_deleted_per_account(
    uow: UnitOfWork,
) -> None:
    async with uow() as tx:
        alice, bob = await make_account(tx), await make_account(tx)
        await tx.backups.put_entries(alice.id, {"session:1": "one", "account-signing-key": "s"})
        await tx.backups.put_entries(alice.id, {"session:1": "one again", "session:2": "two"})
        await tx.backups.put_entries(bob.id, {"session:1": "bob's"})
        await tx.backups.put_entries(bob.id, {})
        await tx.commit()
    async with uow() as tx:
        assert await tx.backups.entries(alice.id) == {
            "account-signing-key": "s",
            "session:1": "one again",
            "session:2": "two",
        }
        await tx.backups.delete_all(alice.id)
        await tx.commit()
    async with uow() as tx:
        assert await tx.backups.entries(alice.id) == {}
        assert await tx.backups.entries(bob.id) == {"session:1": "bob's"}


# --- link requests ----------------------------------------------------------------------


def link_request(expires_in: timedelta = timedelta(minutes=10), **changes: str) -> LinkRequest:
    values = {
        "code_hmac": new_hmac(),
        "device_id": new_id(),
        "ed25519_key": new_ed25519_key(),
        "curve25519_key": new_ed25519_key(),
    }
    values.update(changes)
    return LinkRequest(
        code_hmac=values["code_hmac"],
        device_id=DeviceId(values["device_id"]),
        ed25519_key=values["ed25519_key"],
        curve25519_key=values["curve25519_key"],
        one_time_key=otk("AAAAAAAAAAA"),
        expires_at=now() + expires_in,
        approved_at=None,
    )


async def test_a_link_request_is_found_by_its_code_and_approved_once(uow: UnitOfWork) -> None:
    request = link_request()
    async with uow() as tx:
        assert await tx.link_requests.add(request, now())
        # Its key, code or device id cannot ask twice.
        assert not await tx.link_requests.add(link_request(ed25519_key=request.ed25519_key), now())
        assert not await tx.link_requests.add(link_request(code_hmac=request.code_hmac), now())
        await tx.commit()
    async with uow() as tx:
        stored = await tx.link_requests.by_code_hmac(request.code_hmac)
        assert stored is not None
        assert stored.expires_at == request.expires_at
        assert stored == request
        assert await tx.link_requests.by_ed25519_key(request.ed25519_key) == request
        assert await tx.link_requests.by_code_hmac(new_hmac()) is None
        approved_at = now()
        assert await tx.link_requests.approve(request.code_hmac, approved_at)
        assert not await tx.link_requests.approve(request.code_hmac, now())
        await tx.commit()
    async with uow() as tx:
        used = await tx.link_requests.by_code_hmac(request.code_hmac)
    assert used is not None and used.approved_at == approved_at


async def test_an_expired_link_request_cannot_be_approved_and_frees_its_key(
    uow: UnitOfWork,
) -> None:
    request = link_request(expires_in=timedelta(minutes=10))
    later = now() + timedelta(minutes=11)
    async with uow() as tx:
        assert await tx.link_requests.add(request, now())
        await tx.commit()
    async with uow() as tx:
        assert not await tx.link_requests.approve(request.code_hmac, later)
        again = link_request(ed25519_key=request.ed25519_key, expires_in=timedelta(minutes=30))
        assert await tx.link_requests.add(again, later)  # the expired one was swept
        await tx.commit()
    async with uow() as tx:
        assert await tx.link_requests.by_code_hmac(request.code_hmac) is None
        assert await tx.link_requests.by_ed25519_key(request.ed25519_key) == again


# --- to-device ---------------------------------------------------------------------------


async def test_to_device_messages_are_read_in_order_and_acknowledged(uow: UnitOfWork) -> None:
    async with uow() as tx:
        account = await make_account(tx)
        sender, receiver, other = [await make_device(tx, account.id) for _ in range(3)]
        await tx.to_device.add(
            sender.id, "sk", [(receiver.id, f"m{i}") for i in range(5)] + [(other.id, "x")], now()
        )
        await tx.commit()
    async with uow() as tx:
        page = await tx.to_device.after(receiver.id, 0, 3)
        assert [m.olm for m in page] == ["m0", "m1", "m2"]
        assert {(m.sender_device, m.sender_key, m.device_id) for m in page} == {
            (sender.id, "sk", receiver.id)
        }
        rest = await tx.to_device.after(receiver.id, page[-1].id, 10)
        assert [m.olm for m in rest] == ["m3", "m4"]
        await tx.to_device.delete_up_to(receiver.id, page[-1].id)
        await tx.commit()
    async with uow() as tx:
        assert [m.olm for m in await tx.to_device.after(receiver.id, 0, 10)] == ["m3", "m4"]
        assert [m.olm for m in await tx.to_device.after(other.id, 0, 10)] == ["x"]
        await tx.to_device.delete_up_to(receiver.id, rest[-1].id)
        await tx.to_device.delete_up_to(other.id, rest[-1].id + 100)
        await tx.commit()
    # Ids only grow, even once every message was deleted: "up to N" stays true.
    async with uow() as tx:
        await tx.to_device.add(sender.id, "sk", [(receiver.id, "later")], now())
        await tx.commit()
    async with uow() as tx:
        (later,) = await tx.to_device.after(receiver.id, 0, 10)
    assert later.id > rest[-1].id + 1


async def test_to_device_writers_for_one_device_wait_for_each_other(
    uow: UnitOfWork, database: Database, backend: str
) -> None:
    """A reader that saw id N must never find a smaller id committed later."""
    if backend == "sqlite":
        pytest.skip("SQLite runs one transaction at a time")
    async with uow() as tx:
        account = await make_account(tx)
        sender, receiver = await make_device(tx, account.id), await make_device(tx, account.id)
        await tx.commit()

    async def add_alone(olm: str) -> None:
        async with uow() as tx:
            await tx.to_device.add(sender.id, "sk", [(receiver.id, olm)], now())
            await tx.commit()

    async with uow() as first:
        await first.to_device.add(sender.id, "sk", [(receiver.id, "first")], now())
        second = asyncio.create_task(add_alone("second"))
        await _until_blocked(database, second)
        assert not second.done()
        async with uow() as reader:
            assert await reader.to_device.after(receiver.id, 0, 10) == []
        await first.commit()
    await second
    async with uow() as tx:
        assert [m.olm for m in await tx.to_device.after(receiver.id, 0, 10)] == [
            "first",
            "second",
        ]
