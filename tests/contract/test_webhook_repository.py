"""The webhook storage port (``tx.webhooks``) on every backend: a SQLite file
and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from openmessenger.core.apps import App
from openmessenger.core.ids import AccountId, DeviceId, MessageId
from openmessenger.core.records import Account, Device
from openmessenger.services.ports import (
    DeliveryOutcome,
    DeliveryState,
    DeliveryVerdict,
    UnitOfWork,
    Webhook,
    WebhookDelivery,
)
from openmessenger.storage.database import Database
from tests.contract.test_repositories import (
    make_world,
    new_ed25519_key,
    new_id,
    now,
    send,
)


@pytest.fixture
def uow(database: Database) -> UnitOfWork:
    return database.uow


async def make_app(uow: UnitOfWork, owner: Account, app_id: str) -> None:
    async with uow() as tx:
        assert await tx.apps.create(App(app_id, owner.id, app_id, new_ed25519_key(), now()))
        await tx.commit()


async def app_device(uow: UnitOfWork, account: Account, app_id: str) -> Device:
    device = Device(
        DeviceId(new_id()),
        account.id,
        new_ed25519_key(),
        new_ed25519_key(),
        now(),
        app_id=app_id,
        node_held=True,
    )
    async with uow() as tx:
        await tx.devices.create(device)
        await tx.commit()
    return device


def pending(
    app_id: str, account_id: AccountId, message_id: MessageId, **changes: object
) -> WebhookDelivery:
    at = now()
    made = WebhookDelivery(
        id=new_id(),
        app_id=app_id,
        account_id=account_id,
        message_id=message_id,
        state=DeliveryState.PENDING,
        attempts=0,
        next_attempt_at=at,
        last_status=None,
        last_error=None,
        created_at=at,
        finished_at=None,
    )
    return replace(made, **changes)


class Queue:
    """An app with a webhook, its device in bob's account, and messages to bob."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def setup(self) -> Queue:
        world = await make_world(self.uow)
        self.world = world
        await make_app(self.uow, world.alice, "shop")
        self.device = await app_device(self.uow, world.bob, "shop")
        async with self.uow() as tx:
            await tx.webhooks.put(Webhook("shop", "https://shop.example/hook", "sealed", now()))
            await tx.commit()
        return self

    async def message(self) -> MessageId:
        async with self.uow() as tx:
            sent = await send(tx, self.world.alice, self.world.alice_device, self.world.bob.address)
            await tx.commit()
        return sent.id

    async def add(self, *deliveries: WebhookDelivery) -> None:
        async with self.uow() as tx:
            await tx.webhooks.add_deliveries(deliveries)
            await tx.commit()

    async def claim(self, at: timedelta = timedelta(0), limit: int = 10) -> list[str]:
        moment = now() + at
        async with self.uow() as tx:
            claimed = await tx.webhooks.claim_due(moment, moment + timedelta(minutes=1), limit)
            await tx.commit()
        return [c.delivery.id for c in claimed]

    async def settle(self, *outcomes: DeliveryOutcome) -> None:
        async with self.uow() as tx:
            await tx.webhooks.settle(outcomes)
            await tx.commit()

    async def log(self, state: DeliveryState | None = None) -> list[WebhookDelivery]:
        async with self.uow() as tx:
            return await tx.webhooks.deliveries("shop", state, 100)


async def test_a_webhook_is_set_replaced_and_deleted(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    await make_app(uow, world.alice, "shop")
    first = Webhook("shop", "https://a.example/", "sealed-1", now())
    second = Webhook("shop", "https://b.example/", "sealed-2", now() + timedelta(seconds=1))
    async with uow() as tx:
        assert await tx.webhooks.get("shop") is None
        assert await tx.webhooks.app_ids() == []
        await tx.webhooks.put(first)
        await tx.commit()
    async with uow() as tx:
        assert await tx.webhooks.get("shop") == first
        await tx.webhooks.put(second)
        await tx.commit()
    async with uow() as tx:
        assert await tx.webhooks.get("shop") == second
        assert await tx.webhooks.app_ids() == ["shop"]
        assert await tx.webhooks.delete("shop")
        assert not await tx.webhooks.delete("shop")
        await tx.commit()
    async with uow() as tx:
        assert await tx.webhooks.get("shop") is None


async def test_only_live_devices_of_apps_with_a_webhook_are_targets(uow: UnitOfWork) -> None:
    queue = await Queue(uow).setup()
    world = queue.world
    await make_app(uow, world.alice, "bank")
    bank_device = await app_device(uow, world.bob, "bank")  # bank has no webhook
    async with uow() as tx:
        found = await tx.webhooks.app_devices(
            [queue.device.id, bank_device.id, world.bob_device.id, DeviceId(new_id())]
        )
        assert found == [(queue.device.id, world.bob.id, "shop")]
        assert await tx.keys.revoke(queue.device.id, now())
        await tx.commit()
    async with uow() as tx:
        assert await tx.webhooks.app_devices([queue.device.id]) == []


async def test_due_deliveries_are_claimed_once_until_settled(uow: UnitOfWork) -> None:
    queue = await Queue(uow).setup()
    message = await queue.message()
    due = pending("shop", queue.world.bob.id, message)
    later = pending(
        "shop", queue.world.bob.id, message, next_attempt_at=now() + timedelta(minutes=5)
    )
    await queue.add(due, later)
    assert await queue.claim() == [due.id]
    assert await queue.claim() == []  # leased
    (logged,) = [d for d in await queue.log() if d.id == due.id]
    assert logged.attempts == 1
    retry_at = now() + timedelta(seconds=2)
    await queue.settle(DeliveryOutcome(due.id, DeliveryVerdict.RETRY, retry_at, 500, "HTTP 500"))
    assert await queue.claim() == []  # not due yet
    assert sorted(await queue.claim(timedelta(minutes=10))) == sorted([due.id, later.id])
    finished = now()
    await queue.settle(
        DeliveryOutcome(due.id, DeliveryVerdict.DELIVERED, finished, 204),
        DeliveryOutcome(later.id, DeliveryVerdict.FAILED, finished, None, "x" * 500),
    )
    assert await queue.claim(timedelta(days=365)) == []  # settled rows are never due
    by_id = {d.id: d for d in await queue.log()}
    assert by_id[due.id].state is DeliveryState.DELIVERED
    assert by_id[due.id].attempts == 2 and by_id[due.id].last_status == 204
    assert by_id[due.id].last_error is None and by_id[due.id].next_attempt_at is None
    assert by_id[due.id].finished_at == finished
    assert by_id[later.id].state is DeliveryState.FAILED
    assert by_id[later.id].last_error == "x" * 200  # kept short


async def test_a_lease_that_ran_out_is_claimed_again(uow: UnitOfWork) -> None:
    queue = await Queue(uow).setup()
    delivery = pending("shop", queue.world.bob.id, await queue.message())
    await queue.add(delivery)
    assert await queue.claim() == [delivery.id]
    assert await queue.claim(timedelta(seconds=30)) == []
    assert await queue.claim(timedelta(minutes=2)) == [delivery.id]  # its worker died
    released = now()
    await queue.settle(DeliveryOutcome(delivery.id, DeliveryVerdict.RELEASED, released))
    assert await queue.claim() == [delivery.id]
    (logged,) = await queue.log()
    assert logged.attempts == 3


async def test_concurrent_claims_never_share_a_delivery(uow: UnitOfWork) -> None:
    queue = await Queue(uow).setup()
    message = await queue.message()
    await queue.add(*[pending("shop", queue.world.bob.id, message) for _ in range(30)])
    claims = await asyncio.gather(*[queue.claim(limit=7) for _ in range(6)])
    claimed = [i for ids in claims for i in ids]
    assert len(claimed) == len(set(claimed)) == 30


async def test_the_log_lists_newest_first_by_state_and_drops_pending_with_the_webhook(
    uow: UnitOfWork,
) -> None:
    queue = await Queue(uow).setup()
    message = await queue.message()
    start = now()
    made = [
        pending("shop", queue.world.bob.id, message, created_at=start + timedelta(seconds=i))
        for i in range(3)
    ]
    await queue.add(*made)
    await queue.settle(DeliveryOutcome(made[0].id, DeliveryVerdict.DELIVERED, now(), 200))
    assert [d.id for d in await queue.log()] == [m.id for m in reversed(made)]
    assert [d.id for d in await queue.log(DeliveryState.PENDING)] == [made[2].id, made[1].id]
    assert [d.id for d in await queue.log(DeliveryState.DELIVERED)] == [made[0].id]
    dropped = DeliveryOutcome(made[1].id, DeliveryVerdict.DROPPED, now())
    await queue.settle(dropped)
    assert [d.id for d in await queue.log()] == [made[2].id, made[0].id]
    async with uow() as tx:
        assert await tx.webhooks.delete("shop")
        await tx.commit()
    assert [d.id for d in await queue.log()] == [made[0].id]  # the log of settled ones stays


async def test_a_delivery_whose_webhook_went_is_claimed_without_one(uow: UnitOfWork) -> None:
    queue = await Queue(uow).setup()
    async with uow() as tx:
        await tx.webhooks.delete("shop")
        await tx.commit()
    # Queued by a process that had not seen the deletion yet.
    delivery = pending("shop", queue.world.bob.id, await queue.message())
    await queue.add(delivery)
    async with uow() as tx:
        (claimed,) = await tx.webhooks.claim_due(now(), now() + timedelta(minutes=1), 10)
        await tx.commit()
    assert claimed.webhook is None
    assert claimed.delivery == replace(delivery, attempts=1)
