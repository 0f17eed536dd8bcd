"""Which message an end-to-end edit may name (core/revisions.py): exactly the
envelope's between addresses of one node, also the sender node's id of it for
an edit that came from another node."""

from __future__ import annotations

from openmessenger.core.revisions import EDIT_MEDIA_TYPE, accepted_replaces, remote_reader_id

ALICE = "1111*alpha.test"
BOB = "2222*beta.test"
CAROL = "3333*beta.test"


def test_on_one_node_a_remote_id_in_the_metadata_changes_nothing() -> None:
    """A node cannot re-target its own users' edits by adding remote_replaces."""
    found = accepted_replaces(
        EDIT_MEDIA_TYPE, "local-id", {"remote_replaces": "other-id"}, sender=CAROL, reader=BOB
    )
    assert found == frozenset({"local-id"})


def test_an_edit_from_another_node_may_name_the_senders_id() -> None:
    found = accepted_replaces(
        EDIT_MEDIA_TYPE, "copy-id", {"remote_replaces": "sent-id"}, sender=ALICE, reader=BOB
    )
    assert found == frozenset({"copy-id", "sent-id"})


def test_anything_but_an_edit_names_nothing() -> None:
    found = accepted_replaces(
        "text", None, {"remote_replaces": "sent-id"}, sender=ALICE, reader=BOB
    )
    assert found == frozenset({None})


def test_a_remote_reader_never_takes_a_local_account_id() -> None:
    reader = remote_reader_id(BOB)
    assert len(reader) == 32 and reader.startswith("~")
    assert reader != remote_reader_id(CAROL)
