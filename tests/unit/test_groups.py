"""The pure rules of groups (core/groups.py): who may do what, who inherits a
group, which part of the history a participant may read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from openmessenger.core.errors import Conflict, Forbidden, InvalidInput
from openmessenger.core.groups import (
    Member,
    MemberKind,
    MemberState,
    Role,
    check_invite,
    check_remove,
    check_set_role,
    parse_role,
    successor,
    validate_name,
    visible_seqs,
)
from openmessenger.core.ids import AccountId, Address, ConversationId

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def member(
    name: str,
    role: Role = Role.MEMBER,
    state: MemberState = MemberState.JOINED,
    joined_seq: int | None = 1,
    left_seq: int | None = None,
) -> Member:
    return Member(
        conversation_id=ConversationId("g"),
        account_id=AccountId(name),
        address=Address(f"{name}*example.org"),
        role=role,
        kind=MemberKind.HUMAN,
        app_id=None,
        state=state,
        invited_by=None,
        invited_seq=joined_seq,
        joined_seq=joined_seq,
        left_seq=left_seq,
        joined_at=NOW,
        updated_at=NOW,
    )


OWNER, ADMIN, OTHER_ADMIN = (
    member("o", Role.OWNER),
    member("a", Role.ADMIN),
    member("b", Role.ADMIN),
)
MEMBER, INVITED = member("m"), member("i", state=MemberState.INVITED, joined_seq=None)


def test_owner_and_admins_invite_members_and_the_invited_do_not() -> None:
    assert check_invite(OWNER) is OWNER
    assert check_invite(ADMIN) is ADMIN
    for actor in (MEMBER, INVITED, None):
        with pytest.raises(Forbidden) as raised:
            check_invite(actor)
        assert raised.value.code == "group_forbidden"


@pytest.mark.parametrize(
    ("actor", "target", "allowed"),
    [
        (OWNER, ADMIN, True),
        (OWNER, MEMBER, True),
        (OWNER, INVITED, True),
        (ADMIN, MEMBER, True),
        (ADMIN, INVITED, True),
        (ADMIN, OTHER_ADMIN, False),
        (ADMIN, OWNER, False),
        (MEMBER, INVITED, False),
        (MEMBER, OWNER, False),
        (INVITED, MEMBER, False),
    ],
)
def test_who_removes_whom(actor: Member, target: Member, allowed: bool) -> None:
    if allowed:
        check_remove(actor, target)
    else:
        with pytest.raises(Forbidden):
            check_remove(actor, target)


def test_nobody_removes_themselves_they_leave() -> None:
    with pytest.raises(InvalidInput):
        check_remove(ADMIN, ADMIN)


def test_only_the_owner_changes_roles_of_joined_participants() -> None:
    check_set_role(OWNER, MEMBER, Role.ADMIN)
    check_set_role(OWNER, ADMIN, Role.OWNER)
    with pytest.raises(Forbidden):
        check_set_role(ADMIN, MEMBER, Role.ADMIN)
    with pytest.raises(Forbidden):
        check_set_role(MEMBER, MEMBER, Role.ADMIN)
    with pytest.raises(Conflict):
        check_set_role(OWNER, INVITED, Role.ADMIN)
    with pytest.raises(InvalidInput):
        check_set_role(OWNER, OWNER, Role.MEMBER)


def test_the_longest_standing_admin_inherits_else_the_longest_standing_member() -> None:
    old_member = member("early", joined_seq=2)
    late_admin = member("late", Role.ADMIN, joined_seq=9)
    earlier_admin = member("earlier", Role.ADMIN, joined_seq=5)
    everyone = [OWNER, old_member, late_admin, earlier_admin, INVITED]
    assert successor(everyone, OWNER.account_id) == earlier_admin
    assert successor([OWNER, late_admin, old_member, INVITED], OWNER.account_id) == late_admin
    assert successor([OWNER, member("x", joined_seq=7), old_member], OWNER.account_id) == old_member
    assert successor([OWNER, INVITED], OWNER.account_id) is None


def test_history_is_readable_from_joining_to_leaving() -> None:
    assert visible_seqs(member("j", joined_seq=4)) == (4, 2**63 - 1)
    assert visible_seqs(member("l", state=MemberState.LEFT, joined_seq=4, left_seq=9)) == (4, 9)
    assert visible_seqs(member("r", state=MemberState.REMOVED, joined_seq=4, left_seq=6)) == (4, 6)
    assert visible_seqs(INVITED) is None
    assert visible_seqs(None) is None


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "tab\tname"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_name(name)
    assert raised.value.field == "name"


def test_names_and_roles_parse() -> None:
    assert validate_name("  Friends ") == "Friends"
    assert parse_role("admin") is Role.ADMIN
    with pytest.raises(InvalidInput):
        parse_role("king")
