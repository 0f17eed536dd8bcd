"""Webhooks: an app receives its users' incoming messages by HTTPS POST instead
of holding a stream open.

An app sets one URL (``PUT /v1/apps/{app}/webhook``) and gets a signing secret,
kept sealed under the node secret. When a message is stored and published,
every stream event of one of the app's devices (except the device that sent
it) becomes one row in ``webhook_deliveries``: one per (message, account, app).
The :class:`WebhookSender` leases due rows, builds the body at send time (the
message as the app's device reads it; nothing of it is stored), signs and
POSTs it. A 2xx answer delivers it; anything else is retried 1 s, 2 s, 4 s ...
apart (at most 10 minutes, plus up to 10 % jitter) until ``give_up_after``
from its creation, then it is ``failed``. The rows are the app's delivery log.

What the design accepts, on purpose:

- Queueing runs in its own transaction right after the message's commit. A
  crash between the two loses that call (the message itself is stored): an app
  catches up with ``GET /v1/sync`` as the app's device.
- Delivery is at-least-once and unordered (parallel attempts, retries, and a
  call whose answer was lost): apps de-duplicate by ``message.id`` (or the
  ``Openmessenger-Delivery`` header) and order by ``message.seq``.
- So that a send on a node without webhooks pays nothing, each process keeps
  the set of apps that have a webhook; it is updated at once by changes made in
  this process and re-read every :data:`CACHE_SECONDS` otherwise. A webhook
  set through another process of the node may so miss the messages of its
  first few seconds (the database, not the cache, decides for removed ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

from openmessenger.core.apps import AppCaller, AppId, Scope
from openmessenger.core.envelope import Message, StreamEvent
from openmessenger.core.errors import InvalidInput, NotFound
from openmessenger.core.ids import AccountId, DeviceId, MessageId, is_loopback_host
from openmessenger.core.records import Device
from openmessenger.protocol.client_api import MessageOut
from openmessenger.protocol.webhooks_api import (
    DELIVERY_HEADER,
    MAX_URL_CHARS,
    SECRET_PREFIX,
    SIGNATURE_HEADER,
    WebhookMessageEvent,
    signature,
)
from openmessenger.services.apps import require_scope
from openmessenger.services.node_held import NodeHeldReader
from openmessenger.services.ports import (
    ClaimedDelivery,
    Clock,
    DeliveryOutcome,
    DeliveryState,
    DeliveryVerdict,
    Secrets,
    UnitOfWork,
    Webhook,
    WebhookDelivery,
)

log = logging.getLogger(__name__)

SECRET_BYTES = 32
CACHE_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 600.0
MAX_PAGE = 500
_SEAL_PURPOSE = "webhook-secret"


class WebhookUnreachable(Exception):
    """No answer: connection, TLS or timeout. The message is short and names
    neither the URL nor anything secret (it goes into the delivery log)."""


class WebhookPoster(Protocol):
    """Outbound HTTP(S) to apps' webhook URLs (federation/webhook_client.py)."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST ``body``; the status of the answer (redirects are not followed).
        Raises :class:`WebhookUnreachable` when nothing answered."""
        ...

    async def close(self) -> None: ...


MessageRenderer = Callable[[Message], MessageOut]
"""How the API renders a message (``api/render.message``, given by wiring): an app
reads the same JSON in a webhook call as on ``/v1/sync``."""


class WebhookQueue(Protocol):
    """What the messaging and federation services call once events are published."""

    async def enqueue(self, events: Sequence[StreamEvent]) -> None: ...


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    url: str
    secret: str
    """The signing secret, shown this once."""
    created_at: datetime


def parse_webhook_url(value: str, *, field: str = "url") -> str:
    """https://, or http:// to a loopback host (local development, tests); no
    credentials, no fragment, at most :data:`MAX_URL_CHARS` characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL_CHARS:
        raise InvalidInput(field, f"must be a URL of at most {MAX_URL_CHARS} characters")
    if not value.isprintable() or any(c.isspace() for c in value):
        raise InvalidInput(field, "must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise InvalidInput(field, "is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in {"https", "http"} or not host:
        raise InvalidInput(field, "must be an https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(field, "must not contain a user name or password")
    if parts.fragment:
        raise InvalidInput(field, "must not have a #fragment")
    if scheme == "http" and not is_loopback_host(host):
        raise InvalidInput(field, "must use https:// (http:// only for a loopback host)")
    return value


def backoff_seconds(attempts: int, rng: random.Random) -> float:
    """1 s, 2 s, 4 s ... up to ten minutes, each up to 10 % later (spread out)."""
    base = min(MAX_BACKOFF_SECONDS, 2.0 ** min(max(0, attempts - 1), 16))
    return base * rng.uniform(1.0, 1.1)


def _secret_purpose(app_id: AppId) -> str:
    # Bound to the app: a sealed secret copied to another app's row does not open.
    return f"{_SEAL_PURPOSE}:{app_id}"


def webhook_body(
    delivery: WebhookDelivery, device: Device, message: Message, render: MessageRenderer
) -> bytes:
    event = WebhookMessageEvent(
        delivery_id=delivery.id,
        app_id=delivery.app_id,
        account_id=delivery.account_id,
        device_id=device.id,
        message=render(message),
    )
    return event.model_dump_json(by_alias=True).encode()


class WebhookService:
    """The webhook API (for the app, by API key) and the queueing hook."""

    def __init__(
        self, uow: UnitOfWork, clock: Clock, secrets: Secrets, sender: WebhookSender
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._secrets = secrets
        self.sender = sender
        self._apps: frozenset[AppId] | None = None
        self._apps_until: datetime | None = None
        self._apps_version = 0
        self._refresh_lock = asyncio.Lock()

    async def put(self, caller: AppCaller, url: str) -> CreatedWebhook:
        """Set the app's webhook with a new secret (a PUT with the same URL rotates it)."""
        require_scope(caller, Scope.WEBHOOKS)
        url = parse_webhook_url(url)
        app_id = caller.app.id
        secret = SECRET_PREFIX + self._secrets.token(SECRET_BYTES)
        now = self._clock.now()
        sealed = self._secrets.seal(_secret_purpose(app_id), secret)
        async with self._uow() as tx:
            await tx.webhooks.put(Webhook(app_id, url, sealed, now))
            await tx.commit()
        self._changed(app_id, present=True)
        return CreatedWebhook(url, secret, now)

    async def get(self, caller: AppCaller) -> Webhook:
        require_scope(caller, Scope.WEBHOOKS)
        async with self._uow() as tx:
            found = await tx.webhooks.get(caller.app.id)
        if found is None:
            raise NotFound("The app has no webhook.", code="webhook_not_found")
        return found

    async def delete(self, caller: AppCaller) -> None:
        """No more calls; pending deliveries are dropped (the log of settled ones stays)."""
        require_scope(caller, Scope.WEBHOOKS)
        async with self._uow() as tx:
            deleted = await tx.webhooks.delete(caller.app.id)
            await tx.commit()
        self._changed(caller.app.id, present=False)
        if not deleted:
            raise NotFound("The app has no webhook.", code="webhook_not_found")

    async def deliveries(
        self, caller: AppCaller, state: DeliveryState | None, limit: int
    ) -> list[WebhookDelivery]:
        """The delivery log, newest first."""
        require_scope(caller, Scope.WEBHOOKS)
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput("limit", f"must be between 1 and {MAX_PAGE}")
        async with self._uow() as tx:
            return await tx.webhooks.deliveries(caller.app.id, state, limit)

    # --- the hook -------------------------------------------------------------------

    async def enqueue(self, events: Sequence[StreamEvent]) -> None:
        """Queue a call for each event of an app device whose app has a webhook
        (not the sending device's own). Never raises: the message is stored."""
        candidates = {e.device_id for e in events if e.device_id != e.message.sender_device}
        if not candidates:
            return
        try:
            if not await self._webhook_apps():
                return  # the common case: no database round trip
            queued = await self._queue(events, sorted(candidates))
        except Exception:
            log.exception("queueing webhook calls failed; the apps catch up with /v1/sync")
            return
        if queued:
            self.sender.kick()

    async def _queue(self, events: Sequence[StreamEvent], device_ids: list[DeviceId]) -> int:
        now = self._clock.now()
        async with self._uow() as tx:
            targets = await tx.webhooks.app_devices(device_ids)
            if not targets:
                return 0
            holder = {device: (account, app) for device, account, app in targets}
            seen: set[tuple[MessageId, AccountId, AppId]] = set()
            rows = []
            for event in events:
                found = holder.get(event.device_id)
                if found is None or event.device_id == event.message.sender_device:
                    continue
                key = (event.message.id, *found)
                if key in seen:
                    continue  # one call per account, however many app devices it has
                seen.add(key)
                rows.append(
                    WebhookDelivery(
                        id=self._secrets.identifier(),
                        app_id=found[1],
                        account_id=found[0],
                        message_id=event.message.id,
                        state=DeliveryState.PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        last_status=None,
                        last_error=None,
                        created_at=now,
                        finished_at=None,
                    )
                )
            await tx.webhooks.add_deliveries(rows)
            await tx.commit()
        return len(rows)

    def _cached_apps(self) -> frozenset[AppId] | None:
        until = self._apps_until
        return self._apps if until is not None and self._clock.now() < until else None

    async def _webhook_apps(self) -> frozenset[AppId]:
        cached = self._cached_apps()
        if cached is not None:
            return cached
        async with self._refresh_lock:
            cached = self._cached_apps()
            if cached is not None:
                return cached
            version = self._apps_version
            async with self._uow() as tx:
                found = frozenset(await tx.webhooks.app_ids())
            if version == self._apps_version:
                self._apps = found
                self._apps_until = self._clock.now() + timedelta(seconds=CACHE_SECONDS)
                return found
            # Changed here while reading: trust neither, read again next time.
            self._apps_until = None
            return found | (self._apps or frozenset())

    def _changed(self, app_id: AppId, *, present: bool) -> None:
        self._apps_version += 1
        if self._apps is not None:
            self._apps = self._apps | {app_id} if present else self._apps - {app_id}


_SWEEP_EVERY = timedelta(hours=1)


class WebhookSender:
    """The worker: leases due deliveries, calls the apps, records the outcomes."""

    def __init__(
        self,
        *,
        uow: UnitOfWork,
        clock: Clock,
        secrets: Secrets,
        poster: WebhookPoster,
        reader: NodeHeldReader,
        render: MessageRenderer,
        give_up_after: timedelta,
        lease: timedelta,
        keep_log: timedelta = timedelta(days=30),
        batch: int = 64,
        max_in_flight: int = 64,
        poll_seconds: float = 5.0,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._secrets = secrets
        self._poster = poster
        self._reader = reader
        self._render = render
        self._give_up_after = give_up_after
        self._lease = lease
        self._keep_log = keep_log
        self._next_sweep: datetime | None = None
        self._batch = batch
        self._max_in_flight = max_in_flight
        self._poll_seconds = poll_seconds
        self._rng = random.Random()  # noqa: S311 - jitter, not a secret
        self._wake = asyncio.Event()
        self._claim_lock = asyncio.Lock()
        self._starved = False
        self._due: list[datetime] = []  # next attempts this process scheduled (a heap)
        self._last_claim: datetime | None = None
        self._attempts: set[asyncio.Task[None]] = set()
        self._sending: set[str] = set()
        self._settling: list[DeliveryOutcome] = []
        self._settler: asyncio.Task[None] | None = None
        self._runner: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """Look for due deliveries now."""
        self._wake.set()

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="webhook-sender")

    async def stop(self) -> None:
        tasks = [t for t in (self._runner, *self._attempts) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = None
        # Calls cut short are due again at once, not when their lease runs out.
        now = self._clock.now()
        self._settling += [DeliveryOutcome(i, DeliveryVerdict.RELEASED, now) for i in self._sending]
        self._sending.clear()
        if self._settler is not None:
            await asyncio.gather(self._settler, return_exceptions=True)
        if self._settling:
            await self._settle_now()

    async def deliver_due(self) -> int:
        """Attempt every delivery due now (by the clock) and return once each
        attempt under way has its outcome recorded: how many this call claimed.
        For tests that move the clock, and for operators' tools."""
        async with self._claim_lock:
            claimed, _ = await self._claim_and_spawn()
        await self.drain()
        return claimed

    async def forget_old_log(self) -> int:
        """Delete the delivery log older than ``keep_log`` (the loop does it hourly)."""
        now = self._clock.now()
        self._next_sweep = now + _SWEEP_EVERY
        async with self._uow() as tx:
            forgotten = await tx.webhooks.forget_finished(now - self._keep_log)
            await tx.commit()
        return forgotten

    async def drain(self) -> None:
        """Wait until every attempt under way has ended and its outcome is recorded."""
        while True:
            waiting = list(self._attempts)
            if self._settler is not None and not self._settler.done():
                waiting.append(self._settler)
            if not waiting:
                if not self._settling:
                    return
                await self._settle_now()
                continue
            await asyncio.gather(*waiting, return_exceptions=True)

    # --- the loop -------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before claiming: a kick during the claim is not lost
            try:
                async with self._claim_lock:
                    _, full = await self._claim_and_spawn()
                if self._next_sweep is None or self._clock.now() >= self._next_sweep:
                    await self.forget_old_log()
                wait = self._wait_seconds()
            except Exception:
                log.exception("reading the webhook queue failed")
                full, wait = False, self._poll_seconds
            if full:
                continue  # more may be due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    def _wait_seconds(self) -> float:
        """Until the next retry this process scheduled, at most ``poll_seconds``
        (retries other processes scheduled are found by polling)."""
        claimed_at = self._last_claim
        while self._due and claimed_at is not None and self._due[0] <= claimed_at:
            heapq.heappop(self._due)
        if not self._due:
            return self._poll_seconds
        until = (self._due[0] - self._clock.now()).total_seconds()
        return min(self._poll_seconds, max(until, 0.01))

    async def _claim_and_spawn(self) -> tuple[int, bool]:
        room = min(self._batch, self._max_in_flight - len(self._attempts))
        if room <= 0:
            self._starved = True  # the next attempt to end wakes the loop
            return 0, False
        now = self._clock.now()
        async with self._uow() as tx:
            claimed = await tx.webhooks.claim_due(now, now + self._lease, room)
            await tx.commit()
        self._last_claim = now
        for item in claimed:
            self._sending.add(item.delivery.id)
            task = asyncio.create_task(self._attempt(item))
            self._attempts.add(task)
            task.add_done_callback(self._attempts.discard)
        return len(claimed), len(claimed) == room

    async def _attempt(self, item: ClaimedDelivery) -> None:
        delivery_id = item.delivery.id
        try:
            outcome = await self._send(item)
        except Exception:
            log.exception("webhook delivery %s failed unexpectedly", delivery_id)
            outcome = self._failure(item.delivery, None, "internal error")
        self._sending.discard(delivery_id)
        if outcome.verdict is DeliveryVerdict.RETRY:
            heapq.heappush(self._due, outcome.at)
        self._settling.append(outcome)
        if self._settler is None or self._settler.done():
            self._settler = asyncio.create_task(self._settle_soon())
        if self._starved:
            self._starved = False
            self._wake.set()

    async def _send(self, item: ClaimedDelivery) -> DeliveryOutcome:
        delivery, webhook = item.delivery, item.webhook
        if webhook is None:
            return DeliveryOutcome(delivery.id, DeliveryVerdict.DROPPED, self._clock.now())
        async with self._uow() as tx:
            message = await tx.messages.get(delivery.message_id)
            devices = await tx.apps.app_devices(delivery.account_id, delivery.app_id)
        if message is None or not devices:
            # Deleted since (with the app's data, or the account): nothing to tell.
            return DeliveryOutcome(delivery.id, DeliveryVerdict.DROPPED, self._clock.now())
        device = devices[0]
        (readable,) = await self._reader.readable(device, [message])
        body = webhook_body(delivery, device, readable, self._render)
        try:
            secret = self._secrets.unseal(_secret_purpose(delivery.app_id), webhook.sealed_secret)
        except ValueError:
            return self._failure(delivery, None, "the signing secret cannot be read: set it again")
        headers = {
            "Content-Type": "application/json",
            DELIVERY_HEADER: delivery.id,
            SIGNATURE_HEADER: signature(secret, int(self._clock.now().timestamp()), body),
        }
        try:
            status = await self._poster.post(webhook.url, body, headers)
        except WebhookUnreachable as exc:
            return self._failure(delivery, None, str(exc) or "no answer")
        if 200 <= status < 300:
            return DeliveryOutcome(
                delivery.id, DeliveryVerdict.DELIVERED, self._clock.now(), last_status=status
            )
        return self._failure(delivery, status, f"HTTP {status}")

    def _failure(
        self, delivery: WebhookDelivery, status: int | None, error: str
    ) -> DeliveryOutcome:
        now = self._clock.now()
        give_up_at = delivery.created_at + self._give_up_after
        if now >= give_up_at:
            return DeliveryOutcome(delivery.id, DeliveryVerdict.FAILED, now, status, error)
        delay = timedelta(seconds=backoff_seconds(delivery.attempts, self._rng))
        # The last attempt falls on the give-up time; failing there is final.
        next_at = min(now + delay, give_up_at)
        return DeliveryOutcome(delivery.id, DeliveryVerdict.RETRY, next_at, status, error)

    async def _settle_soon(self) -> None:
        # Outcomes that arrive while one batch is written go in the next one.
        while self._settling:
            await asyncio.sleep(0)
            await self._settle_now()

    async def _settle_now(self) -> None:
        batch, self._settling = self._settling, []
        try:
            async with self._uow() as tx:
                await tx.webhooks.settle(batch)
                await tx.commit()
        except Exception:
            log.exception("recording %d webhook outcomes failed; their leases expire", len(batch))
