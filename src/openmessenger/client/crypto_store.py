"""The device's end-to-end state: ``<profile>/crypto.db`` (SQLite, 0600).

Olm and Megolm sessions are stored as vodozemac pickles, which vodozemac
encrypts under the profile's pickle key (``pickle.key``, kept apart from this
file); other secrets (the account signing key, the sealing key) are sealed
under a key derived from the same pickle key. A copy of ``crypto.db`` alone
holds nothing usable.

Every ratchet step is a read-modify-write inside one ``BEGIN IMMEDIATE``
transaction (:meth:`CryptoStore.transaction`): the session is restored from
its pickle, used once and written back before the transaction ends. Two
processes on one profile (``listen`` in one terminal, ``send`` in another)
therefore never hold two live copies of one session, which would fork its
ratchet.

The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS`
brings an older file up to :data:`SCHEMA_VERSION` when it is opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from openmessenger.client.errors import StateError
from openmessenger.crypto.local_box import LocalBox, LocalBoxError
from openmessenger.crypto.megolm import InboundGroupSession, MegolmError, OutboundGroupSession
from openmessenger.crypto.olm import OlmError, OlmSession

_T = TypeVar("_T")

CRYPTO_FILE = "crypto.db"
SCHEMA_VERSION = 2
_BUSY_TIMEOUT_SECONDS = 30.0

_SCHEMA_V1 = """
CREATE TABLE olm_sessions (
    peer_key    TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    pickle      TEXT NOT NULL,
    used_at     INTEGER NOT NULL,
    PRIMARY KEY (peer_key, session_id)
);
CREATE TABLE outbound_sessions (
    conversation TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL,
    pickle       TEXT NOT NULL,
    created_at   REAL NOT NULL,
    messages     INTEGER NOT NULL,
    shared_with  TEXT NOT NULL
);
CREATE TABLE inbound_sessions (
    sender_key  TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    pickle      TEXT NOT NULL,
    sender      TEXT NOT NULL,
    recipient   TEXT NOT NULL,
    backed_up   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (sender_key, session_id)
);
CREATE TABLE seen_indices (
    session_id  TEXT NOT NULL,
    idx         INTEGER NOT NULL,
    message_id  TEXT NOT NULL,
    PRIMARY KEY (session_id, idx)
);
CREATE TABLE pins (
    address     TEXT PRIMARY KEY,
    signing_key TEXT NOT NULL,
    version     INTEGER NOT NULL,
    devices     TEXT NOT NULL
);
CREATE TABLE secrets (
    name   TEXT PRIMARY KEY,
    sealed TEXT NOT NULL
);
CREATE TABLE settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
"""

Migration = Callable[[sqlite3.Connection], None]


def _create_v1(db: sqlite3.Connection) -> None:
    # One statement at a time: executescript would commit the migration's transaction.
    for statement in _SCHEMA_V1.split(";"):
        if statement.strip():
            db.execute(statement)


def _keep_keys(db: sqlite3.Connection) -> None:
    # Version 2 keeps the last keys answer of each address, so that a device can
    # still encrypt to a contact whose node is unreachable for a while.
    db.execute("ALTER TABLE pins ADD COLUMN keys TEXT")


MIGRATIONS: dict[int, Migration] = {0: _create_v1, 1: _keep_keys}
"""``MIGRATIONS[n]`` turns a version ``n`` file into a version ``n + 1`` one."""


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    session: OutboundGroupSession
    created_at: float
    messages: int
    shared_with: frozenset[str]
    """Curve25519 keys of the devices that hold this session's key."""


@dataclass(frozen=True, slots=True)
class InboundRecord:
    sender_key: str
    session: InboundGroupSession
    sender: str
    recipient: str


@dataclass(frozen=True, slots=True)
class Pin:
    """What this device last saw of an address: its signing key and device list."""

    signing_key: str
    version: int
    devices: frozenset[str]


class CryptoStore:
    def __init__(self, directory: Path, pickle_key: bytes) -> None:
        self._path = directory / CRYPTO_FILE
        self._pickle_key = pickle_key
        # A separate key for sealed secrets, so no key is used for two purposes.
        self._box = LocalBox(
            hashlib.sha256(b"openmessenger/v1/local-secrets\n" + pickle_key).digest()
        )
        created = not self._path.exists()
        try:
            self._db = sqlite3.connect(
                self._path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise StateError(f"cannot open {self._path}: {exc}") from exc
        if created:
            os.chmod(self._path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        with self.transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(
                    f"{self._path} has schema version {version}, written by a newer openmessenger"
                )
            while version < SCHEMA_VERSION:
                MIGRATIONS[version](self._db)
                version += 1
                self._db.execute(f"PRAGMA user_version = {version}")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One exclusive read-modify-write across processes; nests as a no-op."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- Olm sessions --------------------------------------------------------------

    def olm_sessions(self, peer_key: str) -> list[OlmSession]:
        """Sessions with the device whose Curve25519 key is ``peer_key``, newest use first."""
        rows = self._db.execute(
            "SELECT pickle FROM olm_sessions WHERE peer_key = ? ORDER BY used_at DESC",
            (peer_key,),
        ).fetchall()
        return [self._restore(OlmSession.from_pickle, row[0], OlmError) for row in rows]

    def save_olm_session(self, peer_key: str, session: OlmSession, used_at: int) -> None:
        self._db.execute(
            "INSERT INTO olm_sessions (peer_key, session_id, pickle, used_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (peer_key, session_id) DO UPDATE"
            " SET pickle = excluded.pickle, used_at = excluded.used_at",
            (peer_key, session.session_id, session.to_pickle(self._pickle_key), used_at),
        )

    # -- outbound Megolm sessions (one per conversation this device sends to) ---------

    def outbound(self, conversation: str) -> OutboundRecord | None:
        row = self._db.execute(
            "SELECT pickle, created_at, messages, shared_with FROM outbound_sessions"
            " WHERE conversation = ?",
            (conversation,),
        ).fetchone()
        if row is None:
            return None
        session = self._restore(OutboundGroupSession.from_pickle, row[0], MegolmError)
        return OutboundRecord(session, row[1], row[2], frozenset(json.loads(row[3])))

    def save_outbound(self, conversation: str, record: OutboundRecord) -> None:
        self._db.execute(
            "INSERT INTO outbound_sessions"
            " (conversation, session_id, pickle, created_at, messages, shared_with)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (conversation) DO UPDATE SET"
            " session_id = excluded.session_id, pickle = excluded.pickle,"
            " created_at = excluded.created_at, messages = excluded.messages,"
            " shared_with = excluded.shared_with",
            (
                conversation,
                record.session.session_id,
                record.session.to_pickle(self._pickle_key),
                record.created_at,
                record.messages,
                json.dumps(sorted(record.shared_with)),
            ),
        )

    def drop_outbound_sessions(self) -> None:
        """Every conversation starts a new session at its next message (a device left)."""
        self._db.execute("DELETE FROM outbound_sessions")

    # -- inbound Megolm sessions --------------------------------------------------

    def inbound(self, sender_key: str, session_id: str) -> InboundRecord | None:
        row = self._db.execute(
            "SELECT pickle, sender, recipient FROM inbound_sessions"
            " WHERE sender_key = ? AND session_id = ?",
            (sender_key, session_id),
        ).fetchone()
        if row is None:
            return None
        session = self._restore(InboundGroupSession.from_pickle, row[0], MegolmError)
        return InboundRecord(sender_key, session, row[1], row[2])

    def save_inbound(self, record: InboundRecord, *, backed_up: bool = False) -> bool:
        """Keep a session; an existing copy stays unless this one reaches further back.
        True when something was stored."""
        existing = self.inbound(record.sender_key, record.session.session_id)
        if (
            existing is not None
            and existing.session.first_known_index <= record.session.first_known_index
        ):
            return False
        self._db.execute(
            "INSERT INTO inbound_sessions"
            " (sender_key, session_id, pickle, sender, recipient, backed_up)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sender_key, session_id) DO UPDATE SET"
            " pickle = excluded.pickle, sender = excluded.sender,"
            " recipient = excluded.recipient, backed_up = excluded.backed_up",
            (
                record.sender_key,
                record.session.session_id,
                record.session.to_pickle(self._pickle_key),
                record.sender,
                record.recipient,
                int(backed_up),
            ),
        )
        return True

    def update_inbound(self, record: InboundRecord) -> None:
        """Persist a session after use (vodozemac caches ratchet steps in it)."""
        self._db.execute(
            "UPDATE inbound_sessions SET pickle = ? WHERE sender_key = ? AND session_id = ?",
            (
                record.session.to_pickle(self._pickle_key),
                record.sender_key,
                record.session.session_id,
            ),
        )

    def inbound_sessions(self, *, only_not_backed_up: bool = False) -> list[InboundRecord]:
        query = "SELECT sender_key, pickle, sender, recipient FROM inbound_sessions"
        if only_not_backed_up:
            query += " WHERE backed_up = 0"
        return [
            InboundRecord(
                row[0],
                self._restore(InboundGroupSession.from_pickle, row[1], MegolmError),
                row[2],
                row[3],
            )
            for row in self._db.execute(query).fetchall()
        ]

    def mark_backed_up(self, records: list[InboundRecord]) -> None:
        self._db.executemany(
            "UPDATE inbound_sessions SET backed_up = 1 WHERE sender_key = ? AND session_id = ?",
            [(r.sender_key, r.session.session_id) for r in records],
        )

    def mark_all_not_backed_up(self) -> None:
        self._db.execute("UPDATE inbound_sessions SET backed_up = 0")

    # -- replay protection ----------------------------------------------------------

    def record_index(self, session_id: str, index: int, message_id: str) -> bool:
        """Remember that ``message_id`` used this Megolm index. False when another
        message already did: the ciphertext was replayed under a new envelope."""
        row = self._db.execute(
            "SELECT message_id FROM seen_indices WHERE session_id = ? AND idx = ?",
            (session_id, index),
        ).fetchone()
        if row is not None:
            return bool(row[0] == message_id)
        self._db.execute(
            "INSERT INTO seen_indices (session_id, idx, message_id) VALUES (?, ?, ?)",
            (session_id, index, message_id),
        )
        return True

    # -- what this device knows of other addresses ----------------------------------

    def pin(self, address: str) -> Pin | None:
        row = self._db.execute(
            "SELECT signing_key, version, devices FROM pins WHERE address = ?", (address,)
        ).fetchone()
        return None if row is None else Pin(row[0], row[1], frozenset(json.loads(row[2])))

    def save_pin(self, address: str, pin: Pin, keys: str | None = None) -> None:
        """Remember ``pin``, and ``keys`` (the node's answer it came from, JSON)."""
        self._db.execute(
            "INSERT INTO pins (address, signing_key, version, devices, keys)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (address) DO UPDATE SET"
            " signing_key = excluded.signing_key, version = excluded.version,"
            " devices = excluded.devices, keys = excluded.keys",
            (address, pin.signing_key, pin.version, json.dumps(sorted(pin.devices)), keys),
        )

    def last_keys(self, address: str) -> str | None:
        """The last keys answer seen for ``address`` (JSON), if any."""
        row = self._db.execute("SELECT keys FROM pins WHERE address = ?", (address,)).fetchone()
        return None if row is None else row[0]

    # -- secrets ----------------------------------------------------------------------

    def secret(self, name: str) -> str | None:
        row = self._db.execute("SELECT sealed FROM secrets WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        try:
            return self._box.open(row[0]).decode()
        except LocalBoxError as exc:
            raise StateError(f"cannot open the secret {name!r} in {self._path}: {exc}") from exc

    def set_secret(self, name: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO secrets (name, sealed) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed",
            (name, self._box.seal(value.encode())),
        )

    def setting(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, name: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO settings (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def _restore(
        self, restore: Callable[[str, bytes], _T], pickle: str, error: type[Exception]
    ) -> _T:
        try:
            return restore(pickle, self._pickle_key)
        except error as exc:
            raise StateError(f"{self._path} holds a session this key cannot open: {exc}") from exc
