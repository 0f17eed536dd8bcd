"""Apps' webhooks and the webhook delivery queue, which is also the apps' delivery log.

A settled delivery (delivered or failed) keeps its row as the log, with
``next_attempt_at`` moved to :data:`SETTLED`: the index on ``next_attempt_at``
then only finds live rows when the worker looks for what is due, however long
the log grows. Readers see ``None`` there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, or_, select, update

from openmessenger.core.apps import AppId
from openmessenger.core.ids import AccountId, DeviceId, MessageId
from openmessenger.services.ports import (
    ClaimedDelivery,
    DeliveryOutcome,
    DeliveryState,
    DeliveryVerdict,
    Webhook,
    WebhookDelivery,
)
from openmessenger.storage._base import Repository
from openmessenger.storage.tables import devices, webhook_deliveries, webhooks

SETTLED = datetime(9999, 1, 1, tzinfo=UTC)
"""``next_attempt_at`` of a delivery that will never be attempted again."""
_ERROR_CHARS = 200


def _webhook(row: Any) -> Webhook:
    return Webhook(
        app_id=row.app_id,
        url=row.url,
        sealed_secret=row.sealed_secret,
        created_at=row.created_at,
    )


def _delivery(row: Any) -> WebhookDelivery:
    state = DeliveryState(row.state)
    return WebhookDelivery(
        id=row.id,
        app_id=row.app_id,
        account_id=AccountId(row.account_id),
        message_id=MessageId(row.message_id),
        state=state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if state is DeliveryState.PENDING else None,
        last_status=row.last_status,
        last_error=row.last_error,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


class SqlWebhooks(Repository):
    # --- the webhook ------------------------------------------------------------------

    async def put(self, webhook: Webhook) -> None:
        values = {
            "url": webhook.url,
            "sealed_secret": webhook.sealed_secret,
            "created_at": webhook.created_at,
        }
        result = await self._conn.execute(
            update(webhooks).where(webhooks.c.app_id == webhook.app_id).values(**values)
        )
        if not result.rowcount:
            await self._conn.execute(insert(webhooks).values(app_id=webhook.app_id, **values))

    async def get(self, app_id: AppId) -> Webhook | None:
        row = (
            await self._conn.execute(select(webhooks).where(webhooks.c.app_id == app_id))
        ).first()
        return _webhook(row) if row else None

    async def delete(self, app_id: AppId) -> bool:
        await self._conn.execute(
            delete(webhook_deliveries).where(
                webhook_deliveries.c.app_id == app_id,
                webhook_deliveries.c.state == DeliveryState.PENDING.value,
            )
        )
        result = await self._conn.execute(delete(webhooks).where(webhooks.c.app_id == app_id))
        return bool(result.rowcount)

    async def app_ids(self) -> list[AppId]:
        query = select(webhooks.c.app_id).order_by(webhooks.c.app_id)
        return [r.app_id for r in await self._conn.execute(query)]

    async def app_devices(
        self, device_ids: Sequence[DeviceId]
    ) -> list[tuple[DeviceId, AccountId, AppId]]:
        if not device_ids:
            return []
        query = (
            select(devices.c.id, devices.c.account_id, devices.c.app_id)
            .join(webhooks, webhooks.c.app_id == devices.c.app_id)
            .where(devices.c.id.in_(sorted(set(device_ids))), devices.c.revoked_at.is_(None))
            .order_by(devices.c.id)
        )
        return [
            (DeviceId(r.id), AccountId(r.account_id), r.app_id)
            for r in await self._conn.execute(query)
        ]

    # --- the queue --------------------------------------------------------------------

    async def add_deliveries(self, deliveries: Sequence[WebhookDelivery]) -> None:
        if not deliveries:
            return
        await self._conn.execute(
            insert(webhook_deliveries),
            [
                {
                    "id": d.id,
                    "app_id": d.app_id,
                    "account_id": d.account_id,
                    "message_id": d.message_id,
                    "state": d.state.value,
                    "attempts": d.attempts,
                    "next_attempt_at": d.next_attempt_at or SETTLED,
                    "lease_until": None,
                    "last_status": d.last_status,
                    "last_error": d.last_error,
                    "created_at": d.created_at,
                    "finished_at": d.finished_at,
                }
                for d in deliveries
            ],
        )

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        t = webhook_deliveries
        free = or_(t.c.lease_until.is_(None), t.c.lease_until <= now)
        query = (
            select(t.c.id)
            .where(t.c.next_attempt_at <= now, t.c.state == DeliveryState.PENDING.value, free)
            .order_by(t.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = [row.id for row in await self._conn.execute(query)]
        if not ids:
            return []
        await self._conn.execute(
            update(t)
            .where(t.c.id.in_(ids))
            .values(lease_until=lease_until, attempts=t.c.attempts + 1)
        )
        rows = await self._conn.execute(
            select(
                t,
                webhooks.c.app_id.label("webhook_app_id"),
                webhooks.c.url,
                webhooks.c.sealed_secret,
                webhooks.c.created_at.label("webhook_created_at"),
            )
            .outerjoin(webhooks, webhooks.c.app_id == t.c.app_id)
            .where(t.c.id.in_(ids))
            .order_by(t.c.next_attempt_at, t.c.id)
        )
        return [
            ClaimedDelivery(
                _delivery(r),
                Webhook(r.webhook_app_id, r.url, r.sealed_secret, r.webhook_created_at)
                if r.webhook_app_id is not None
                else None,
            )
            for r in rows
        ]

    async def settle(self, outcomes: Sequence[DeliveryOutcome]) -> None:
        t = webhook_deliveries
        dropped = sorted(o.delivery_id for o in outcomes if o.verdict is DeliveryVerdict.DROPPED)
        if dropped:
            await self._conn.execute(delete(t).where(t.c.id.in_(dropped)))
        for o in outcomes:
            values: dict[str, Any]
            match o.verdict:
                case DeliveryVerdict.DROPPED:
                    continue
                case DeliveryVerdict.DELIVERED | DeliveryVerdict.FAILED:
                    state = (
                        DeliveryState.DELIVERED
                        if o.verdict is DeliveryVerdict.DELIVERED
                        else DeliveryState.FAILED
                    )
                    values = {
                        "state": state.value,
                        "finished_at": o.at,
                        "next_attempt_at": SETTLED,
                        "last_status": o.last_status,
                        "last_error": _short(o.last_error),
                    }
                case DeliveryVerdict.RETRY:
                    values = {
                        "next_attempt_at": o.at,
                        "last_status": o.last_status,
                        "last_error": _short(o.last_error),
                    }
                case DeliveryVerdict.RELEASED:
                    values = {"next_attempt_at": o.at}
            await self._conn.execute(
                update(t)
                .where(t.c.id == o.delivery_id, t.c.state == DeliveryState.PENDING.value)
                .values(lease_until=None, **values)
            )

    async def forget_finished(self, before: datetime) -> int:
        """Delete the log of deliveries settled before ``before``; how many."""
        t = webhook_deliveries
        result = await self._conn.execute(
            delete(t).where(t.c.state != DeliveryState.PENDING.value, t.c.finished_at < before)
        )
        return result.rowcount

    async def deliveries(
        self, app_id: AppId, state: DeliveryState | None, limit: int
    ) -> list[WebhookDelivery]:
        t = webhook_deliveries
        query = select(t).where(t.c.app_id == app_id)
        if state is not None:
            query = query.where(t.c.state == state.value)
        query = query.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit)
        return [_delivery(r) for r in await self._conn.execute(query)]


def _short(text: str | None) -> str | None:
    return text[:_ERROR_CHARS] if text is not None else None
