"""The ephemeral (disappearing) relay's state: what waits, for which device, and
the bounds on it. Pure: times are passed in (monotonic seconds), nothing here
reads a clock, sleeps or touches a disk.

An ephemeral message goes from one device to one other device of a connected
address. The node keeps it in memory only, until the receiving device takes it
or its hold ends; then it is gone, and the sending device gets an expiry notice
(held the same way, at most as long). Everything held is bounded:

- per receiving device: messages waiting for it;
- per sending device: its messages still waiting plus its undelivered notices
  (a notice replaces the message it is about, so it never adds to a count);
- in total, over every device.

A message between two of our nodes (docs/openmsg.md, capability ``ephemeral``)
is held by the receiving node's relay exactly like a local one; when its hold
ends there, the notice goes back to the sender's node instead of waiting here
(:meth:`Relay.drop`). The sender's node keeps, in a :class:`ForwardLedger`, only
what it needs to believe that notice (ids and devices, never a body), bounded
the same way and forgotten once the hold over there is surely over.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from openmessenger.core.errors import InvalidInput, LimitExceeded, Unavailable
from openmessenger.core.ids import Address, DeviceId, Domain

MAX_HOLD_SECONDS = 120.0
"""The node never holds an undelivered ephemeral message longer than this."""
MIN_LIFESPAN_SECONDS = 1
MAX_LIFESPAN_SECONDS = 7 * 24 * 3600
"""How long a receiving client keeps the text once it has it (the sender chooses)."""
RELAY_FULL = "ephemeral_relay_full"
REMOTE_UNSUPPORTED = "ephemeral_remote_unsupported"
DEVICE_UNSUPPORTED = "ephemeral_device_unsupported"


class BodyTooLarge(InvalidInput):
    """The body is over the node's ``ephemeral_max_body_chars`` (nothing is held).
    The same code as an ordinary message over its conversation's size limit."""

    code = "message_too_large"


@dataclass(frozen=True, slots=True)
class RelayLimits:
    hold_seconds: float
    max_body_chars: int
    per_device: int
    total: int


@dataclass(frozen=True, slots=True)
class EphemeralMessage:
    """One message waiting in memory. ``body`` is the sender's ciphertext."""

    id: str
    sender: Address
    sender_device: DeviceId
    recipient: Address
    recipient_device: DeviceId
    body: str
    lifespan_seconds: int
    sent_at: datetime
    expires_at: datetime
    """When the node drops it if it is still undelivered (sent_at + the hold)."""
    deadline: float
    """The same moment on the monotonic clock the relay is driven by."""

    @property
    def device(self) -> DeviceId:
        """The device this waits for."""
        return self.recipient_device


@dataclass(frozen=True, slots=True)
class ExpiryNotice:
    """Tells the sending device that its message ``id`` was never delivered."""

    id: str
    sender_device: DeviceId
    recipient: Address
    recipient_device: DeviceId
    sent_at: datetime
    expired_at: datetime
    deadline: float
    """When the notice itself is dropped if the sending device never takes it."""

    @property
    def device(self) -> DeviceId:
        return self.sender_device


EphemeralEvent = EphemeralMessage | ExpiryNotice


class Relay:
    """Every ephemeral message and notice a node process holds, by device."""

    def __init__(self, limits: RelayLimits) -> None:
        self.limits = limits
        self._inboxes: dict[DeviceId, dict[str, EphemeralEvent]] = {}
        self._waiting_for: Counter[DeviceId] = Counter()
        self._outstanding_of: Counter[DeviceId] = Counter()
        self._total = 0

    def __len__(self) -> int:
        return self._total

    def pending_for(self, device: DeviceId, message_id: str) -> EphemeralMessage | None:
        found = self._inboxes.get(device, {}).get(message_id)
        return found if isinstance(found, EphemeralMessage) else None

    def admit(self, message: EphemeralMessage) -> None:
        """Hold ``message`` for its device, or refuse: the receiving or sending
        device has too many waiting (LimitExceeded), or the relay is full
        (Unavailable). A refused message changes nothing."""
        if self._total >= self.limits.total:
            raise Unavailable(
                "The node holds as many disappearing messages as it may; try again soon.",
                code=RELAY_FULL,
            )
        if self._waiting_for[message.recipient_device] >= self.limits.per_device:
            raise LimitExceeded(
                "That device has too many disappearing messages waiting; try again later.",
                field="device",
            )
        if self._outstanding_of[message.sender_device] >= self.limits.per_device:
            raise LimitExceeded(
                "This device has too many disappearing messages waiting; try again later.",
                field="device",
            )
        self._put(message)

    def put_back(self, event: EphemeralEvent) -> None:
        """Return an event that was taken but could not be handed over (its
        connection dropped); its deadline is unchanged. No bound is checked: it
        was counted before it was taken."""
        self._put(event)

    def take(self, device: DeviceId) -> list[EphemeralEvent]:
        """Everything waiting for ``device``, oldest first; the relay forgets it."""
        inbox = self._inboxes.pop(device, None)
        if not inbox:
            return []
        events = list(inbox.values())
        for event in events:
            self._forget(event)
        return events

    def expire(self, message_id: str, device: DeviceId, now: float) -> ExpiryNotice | None:
        """Its hold is over: drop the message if it still waits for ``device``;
        the notice that now waits for its sender (None: it was delivered)."""
        message = self.pending_for(device, message_id)
        if message is None:
            return None
        self._remove(message)
        notice = ExpiryNotice(
            id=message.id,
            sender_device=message.sender_device,
            recipient=message.recipient,
            recipient_device=message.recipient_device,
            sent_at=message.sent_at,
            expired_at=message.expires_at,
            deadline=now + self.limits.hold_seconds,
        )
        self._put(notice)
        return notice

    def drop(self, message_id: str, device: DeviceId) -> EphemeralMessage | None:
        """Its hold is over and its sender is on another node: drop the message if
        it still waits for ``device``, with no notice here (None: it was delivered)."""
        message = self.pending_for(device, message_id)
        if message is not None:
            self._remove(message)
        return message

    def add_notice(self, notice: ExpiryNotice) -> None:
        """Hold a notice another node sent about a message this node forwarded; it
        takes the place of the ledger entry it answers, so no bound is checked."""
        self._put(notice)

    def drop_notice(self, message_id: str, device: DeviceId) -> bool:
        """The notice's own hold is over: drop it; False if it was taken already."""
        found = self._inboxes.get(device, {}).get(message_id)
        if not isinstance(found, ExpiryNotice):
            return False
        self._remove(found)
        return True

    def _put(self, event: EphemeralEvent) -> None:
        inbox = self._inboxes.setdefault(event.device, {})
        earlier = inbox.get(event.id)
        if earlier is not None:  # one id, one entry: a newer notice replaces an older
            self._remove(earlier)
            inbox = self._inboxes.setdefault(event.device, {})
        inbox[event.id] = event
        if isinstance(event, EphemeralMessage):
            self._waiting_for[event.recipient_device] += 1
        self._outstanding_of[event.sender_device] += 1
        self._total += 1

    def _remove(self, event: EphemeralEvent) -> None:
        inbox = self._inboxes[event.device]
        del inbox[event.id]
        if not inbox:
            del self._inboxes[event.device]
        self._forget(event)

    def _forget(self, event: EphemeralEvent) -> None:
        if isinstance(event, EphemeralMessage):
            _decrement(self._waiting_for, event.recipient_device)
        _decrement(self._outstanding_of, event.sender_device)
        self._total -= 1


@dataclass(frozen=True, slots=True)
class Forwarded:
    """A message this node passed to another node's relay: what it needs to take
    that node's expiry notice about it (never the body)."""

    id: str
    sender: Address
    sender_device: DeviceId
    recipient: Address
    recipient_device: DeviceId
    node: Domain
    """The node holding it: the only one whose notice about it counts."""
    sent_at: datetime
    deadline: float
    """When this node forgets it (monotonic): the hold over there is over by then."""


class ForwardLedger:
    """The messages this node's devices sent to other nodes' relays, while those
    may still expire: per sending device at most ``per_device``, in all at most
    ``total`` (the relay's bounds). Entries past their deadline are forgotten as
    the ledger is used."""

    def __init__(self, limits: RelayLimits) -> None:
        self.limits = limits
        self._entries: dict[str, Forwarded] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._of: Counter[DeviceId] = Counter()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, message_id: str, now: float) -> Forwarded | None:
        self._purge(now)
        return self._entries.get(message_id)

    def remember(self, entry: Forwarded, now: float) -> None:
        """Keep ``entry`` (replacing one with its id), or refuse as the relay would."""
        self._purge(now)
        earlier = self._entries.get(entry.id)
        if earlier is None:
            if len(self._entries) >= self.limits.total:
                raise Unavailable(
                    "The node holds as many disappearing messages as it may; try again soon.",
                    code=RELAY_FULL,
                )
            if self._of[entry.sender_device] >= self.limits.per_device:
                raise LimitExceeded(
                    "This device has too many disappearing messages waiting; try again later.",
                    field="device",
                )
        else:
            self._forget(earlier)
        self._entries[entry.id] = entry
        self._of[entry.sender_device] += 1
        heapq.heappush(self._deadlines, (entry.deadline, entry.id))

    def forget(self, message_id: str) -> Forwarded | None:
        entry = self._entries.get(message_id)
        if entry is not None:
            self._forget(entry)
        return entry

    def undo(self, attempt: Forwarded, earlier: Forwarded | None, now: float) -> None:
        """An attempt to pass a message on failed: drop the entry it made and put
        back what was there before, unless another attempt at the same message
        replaced that entry meanwhile (then that attempt's outcome stands)."""
        if self.get(attempt.id, now) is not attempt:
            return
        self._forget(attempt)
        if earlier is not None:
            self.remember(earlier, now)

    def recall(
        self,
        message_id: str,
        node: Domain,
        sender: Address,
        sender_device: DeviceId,
        recipient: Address,
        recipient_device: DeviceId,
        now: float,
    ) -> Forwarded | None:
        """The entry a notice from ``node`` is about, forgotten now; None when this
        node never sent such a message to that node (or forgot it)."""
        entry = self.get(message_id, now)
        if entry is None or (
            entry.node,
            entry.sender,
            entry.sender_device,
            entry.recipient,
            entry.recipient_device,
        ) != (node, sender, sender_device, recipient, recipient_device):
            return None
        self._forget(entry)
        return entry

    def _forget(self, entry: Forwarded) -> None:
        del self._entries[entry.id]
        _decrement(self._of, entry.sender_device)

    def _purge(self, now: float) -> None:
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, message_id = heapq.heappop(self._deadlines)
            entry = self._entries.get(message_id)
            if entry is not None and entry.deadline == deadline:
                self._forget(entry)
        if len(self._deadlines) > 2 * len(self._entries) + 64:
            # Replaced and recalled entries leave stale deadlines: rebuild now and then.
            self._deadlines = [(e.deadline, e.id) for e in self._entries.values()]
            heapq.heapify(self._deadlines)


def _decrement(counter: Counter[DeviceId], key: DeviceId) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
