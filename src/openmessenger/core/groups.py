"""Groups: who takes part, in which role, and who may do what (pure rules).

A group is a conversation (kind ``group``, mode ``history``) hosted by its
creator's node. Its participants are accounts of this node, each with

- a **role**: ``owner`` (exactly one while anyone is left), ``admin``, ``member``;
- a **kind**: ``human``, or ``system`` for an app's managed account (its device
  is an app's backend; listings show the app id);
- a **state**: ``invited`` (asked over an existing connection, reads nothing
  yet), ``joined``, and the end states ``declined``, ``left``, ``removed``.

Who may do what (``check_*`` raise :class:`Forbidden`, code ``group_forbidden``):

- invite: owner and admins; only addresses the inviter is connected with
  (checked by the service: the generic refusal otherwise);
- remove: the owner removes anyone but itself; an admin removes members (and
  withdraws invitations), never an admin or the owner;
- change roles: the owner only; ``admin``/``member`` for a joined participant;
  making another joined participant ``owner`` hands the group over (the old
  owner becomes an admin);
- leave: always; an owner who leaves hands the group to the longest-standing
  admin, else to the longest-standing member (none left: the group stays, empty).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from openmessenger.core.errors import Conflict, Forbidden, InvalidInput
from openmessenger.core.ids import AccountId, Address, ConversationId, MessageId

GROUP_KIND = "group"
"""``conversations.kind`` of a group (a 1:1 conversation is ``direct``)."""
MEMBER_EVENT_MEDIA_TYPE = "group.member"
"""The media type of the node's membership events in a group's history."""
MAX_NAME_CHARS = 64
DEFAULT_MAX_PARTICIPANTS = 256
REMOTE_UNSUPPORTED = "group_remote_unsupported"
FORBIDDEN = "group_forbidden"


class Mode(enum.StrEnum):
    """How a conversation keeps its messages, chosen at creation."""

    HISTORY = "history"
    """Stored (as ciphertext), synced to every device of each participant."""
    EPHEMERAL = "ephemeral"
    """Relayed from memory only (1:1)."""


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class MemberKind(enum.StrEnum):
    HUMAN = "human"
    SYSTEM = "system"
    """An app's managed account: its device is the app's backend."""


class MemberState(enum.StrEnum):
    INVITED = "invited"
    JOINED = "joined"
    DECLINED = "declined"
    LEFT = "left"
    REMOVED = "removed"

    @property
    def current(self) -> bool:
        """Counts as a participant (listed, counted against the limit)."""
        return self in (MemberState.INVITED, MemberState.JOINED)


class MemberEvent(enum.StrEnum):
    """What a ``group.member`` event says happened."""

    CREATED = "created"
    INVITED = "invited"
    JOINED = "joined"
    DECLINED = "declined"
    LEFT = "left"
    REMOVED = "removed"
    ROLE_CHANGED = "role_changed"


@dataclass(frozen=True, slots=True)
class Group:
    id: ConversationId
    name: str
    mode: Mode
    created_by: Address
    created_at: datetime
    last_seq: int


@dataclass(frozen=True, slots=True)
class Member:
    conversation_id: ConversationId
    account_id: AccountId
    address: Address
    role: Role
    kind: MemberKind
    app_id: str | None
    state: MemberState
    invited_by: Address | None
    invited_seq: int | None
    """The seq of its "invited" (or "created") event: participants are listed in this order."""
    joined_seq: int | None
    """The seq of this member's "joined" (or "created") event: history starts there."""
    left_seq: int | None
    """The seq of its "left"/"removed" event: history ends there."""
    joined_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class GroupAppend:
    """One message for a group's log: the caller holds the group's lock and
    decided who receives it (every device of ``receivers``, but the sending device)."""

    message_id: MessageId
    conversation_id: ConversationId
    sender: Address
    sender_device: str
    body: str
    client_txn_id: str | None
    sent_at: datetime
    encryption: str
    receivers: tuple[AccountId, ...]
    media_type: str = "text"
    metadata: str | None = None
    seq: int | None = None
    """A replica of a group hosted on another node stores the host's seq; None:
    this node assigns the next one."""


@dataclass(frozen=True, slots=True)
class GroupForward:
    """On a member's node: a message one of its accounts sent to a group hosted
    on another node, kept until the host ordered it."""

    message_id: MessageId
    conversation_id: ConversationId
    sender_account_id: AccountId
    sender_device: str
    body: str
    client_txn_id: str
    sent_at: datetime
    attempts: int
    next_attempt_at: datetime
    give_up_at: datetime
    revision: str | None = None
    """``edit`` or ``delete`` of the sender's message ``replaces``; None: a message."""
    replaces: MessageId | None = None


REMOTE_PREFIX = "@"
"""A participant on another of our nodes has no account here: it goes by
``@`` + its address where an account id is expected (never a real id)."""


def remote_account_id(address: str) -> AccountId:
    return AccountId(REMOTE_PREFIX + address)


def is_remote(member: Member) -> bool:
    """Whether the participant's account lives on another node."""
    return member.account_id.startswith(REMOTE_PREFIX)


def host_of(group: Group) -> str:
    """The domain of the node that hosts the group: its creator's, for good."""
    return group.created_by.rsplit("*", 1)[-1]


def validate_name(value: str, *, field: str = "name") -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not name or len(name) > MAX_NAME_CHARS:
        raise InvalidInput(field, f"must be 1 to {MAX_NAME_CHARS} characters")
    if not name.isprintable():
        raise InvalidInput(field, "must not contain control characters")
    return name


def parse_role(value: str, *, field: str = "role") -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(field, "must be owner, admin or member") from None


def _forbidden(message: str) -> Forbidden:
    return Forbidden(message, code=FORBIDDEN)


def check_joined(actor: Member | None) -> Member:
    if actor is None or actor.state is not MemberState.JOINED:
        raise _forbidden("Only a participant who joined the group may do this.")
    return actor


def check_invite(actor: Member | None) -> Member:
    actor = check_joined(actor)
    if actor.role is Role.MEMBER:
        raise _forbidden("Only the owner and admins invite.")
    return actor


def check_remove(actor: Member | None, target: Member) -> None:
    actor = check_joined(actor)
    if target.account_id == actor.account_id:
        raise InvalidInput("address", "is you: leave the group instead")
    if target.role is Role.OWNER:
        raise _forbidden("Nobody removes the owner.")
    if actor.role is Role.MEMBER:
        raise _forbidden("Only the owner and admins remove participants.")
    if actor.role is Role.ADMIN and target.role is Role.ADMIN:
        raise _forbidden("Only the owner removes an admin.")


def check_set_role(actor: Member | None, target: Member, role: Role) -> None:
    actor = check_joined(actor)
    if actor.role is not Role.OWNER:
        raise _forbidden("Only the owner changes roles.")
    if target.account_id == actor.account_id:
        raise InvalidInput("address", "is you: make another participant owner instead")
    if target.state is not MemberState.JOINED:
        raise Conflict("Only a participant who joined can get a role.", code="group_not_joined")


def successor(members: Sequence[Member], leaving: AccountId) -> Member | None:
    """Who owns the group when its owner leaves: the longest-standing admin,
    else the longest-standing member (by the seq they joined at)."""
    joined = [m for m in members if m.state is MemberState.JOINED and m.account_id != leaving]
    joined.sort(key=lambda m: (m.role is not Role.ADMIN, m.joined_seq or 0, m.address))
    return joined[0] if joined else None


def visible_seqs(member: Member | None) -> tuple[int, int] | None:
    """The seqs of the group's history ``member`` may read, inclusive; None: nothing.
    From its joining; up to its leaving or removal for a former participant."""
    if member is None or member.joined_seq is None:
        return None
    if member.state is MemberState.JOINED:
        return member.joined_seq, 2**63 - 1
    if member.state in (MemberState.LEFT, MemberState.REMOVED) and member.left_seq is not None:
        return member.joined_seq, member.left_seq
    return None


def may_read(member: Member | None, seq: int) -> bool:
    """Whether ``member`` may read the group's message at ``seq``."""
    seqs = visible_seqs(member)
    return seqs is not None and seqs[0] <= seq <= seqs[1]


def event_text(event: MemberEvent, actor: Address, subject: Address, role: Role | None) -> str:
    """The line a client shows for a membership event."""
    match event:
        case MemberEvent.CREATED:
            return f"{actor} created the group"
        case MemberEvent.INVITED:
            return f"{actor} invited {subject}"
        case MemberEvent.JOINED:
            return f"{subject} joined"
        case MemberEvent.DECLINED:
            return f"{subject} declined the invitation"
        case MemberEvent.LEFT:
            return f"{subject} left"
        case MemberEvent.REMOVED:
            return f"{actor} removed {subject}"
        case MemberEvent.ROLE_CHANGED:
            return f"{actor} made {subject} {role.value if role else 'member'}"
