"""A disappearing message leaves no trace: a real ``openmessenger serve`` with a
5-second hold relays one message and lets another expire, and at every step no
file of the node (database, -wal, -shm, logs, anything), none of its output,
and no row of any table holds the text or the ciphertext."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from openmessenger.protocol.ephemeral import EphemeralBody
from tests.support.api import connected_pair
from tests.support.ephemeral import (
    OlmPair,
    files_holding,
    marker,
    needles,
    rows_holding,
    send_ephemeral,
    take,
    take_within,
)
from tests.support.process import NodeProcess
from tests.support.sdk import REQUEST_TIMEOUT_SECONDS

pytestmark = pytest.mark.e2e

HOLD_SECONDS = 5
MARGIN_SECONDS = 3


def ciphertext_needles(body: str) -> tuple[list[str], list[bytes]]:
    """The body as sent, distinctive slices of its base64 ciphertext, and a slice
    of the raw ciphertext bytes (in case anything stored it decoded)."""
    olm = EphemeralBody.model_validate_json(body).olm.body
    raw = base64.b64decode(olm + "=" * (-len(olm) % 4))
    texts = [body, olm, olm[40:80], olm[-60:-20]]
    return texts, [*needles(*texts), raw[30:62]]


async def dump_every_table(database_url: str) -> dict[str, list[dict[str, object]]]:
    """Every row of every table in the node's database, read from outside the node."""
    url = make_url(database_url)
    if url.drivername.startswith("sqlite"):
        with sqlite3.connect(f"file:{url.database}?mode=ro", uri=True) as db:
            db.row_factory = sqlite3.Row
            names = [
                r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            ]
            return {n: [dict(r) for r in db.execute(f'SELECT * FROM "{n}"')] for n in names}
    import asyncpg

    conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        names = [
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        return {n: [dict(r) for r in await conn.fetch(f'SELECT * FROM "{n}"')] for n in names}
    finally:
        await conn.close()


async def postgres_files(database_url: str) -> list[Path]:
    """The server's files of this database and its write-ahead log, when the
    server runs on this machine (the embedded one the tests start does)."""
    import asyncpg

    url = make_url(database_url)
    conn = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute("CHECKPOINT")  # whatever the server buffered is in its files now
        data_dir = Path(await conn.fetchval("SHOW data_directory"))
        oid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
    finally:
        await conn.close()
    candidates = [data_dir / "base" / str(oid), data_dir / "pg_wal", data_dir / "log"]
    return [p for p in candidates if p.is_dir()]


class Traces:
    def __init__(self, node: NodeProcess, database_url: str | None, data_dir: Path) -> None:
        self.node = node
        self.database_url = database_url or f"sqlite:///{data_dir / 'openmessenger.db'}"
        self.data_dir = data_dir
        self.texts: list[str] = []
        self.bytes: list[bytes] = []
        self.checked: list[str] = []

    def watch(self, texts: list[str], raw: list[bytes]) -> None:
        self.texts += texts
        self.bytes += raw

    async def search(self, texts: list[str], raw: list[bytes]) -> list[str]:
        """Where any of these turn up: files, the node's output, table rows."""
        found = files_holding(self.data_dir, raw)
        url = make_url(self.database_url)
        if url.drivername.startswith("sqlite"):
            database = Path(str(url.database))  # the file, -wal, -shm, -journal
            if not database.is_relative_to(self.data_dir):
                found += files_holding(database.parent, raw, prefix=database.name)
        else:
            for directory in await postgres_files(self.database_url):
                found += files_holding(directory, raw)
        output = "\n".join(self.node.log)
        found += [f"node output: {t[:20]}" for t in texts if t in output]
        found += rows_holding(await dump_every_table(self.database_url), texts)
        return found

    async def assert_none(self, moment: str) -> None:
        found = await self.search(self.texts, self.bytes)
        assert found == [], f"{moment}: {found}"
        self.checked.append(moment)


async def test_an_ephemeral_message_leaves_no_row_no_file_no_log_line(
    database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    node = NodeProcess(
        data_dir,
        database_url=database_url,
        env={
            "OPENMESSENGER_LOG_LEVEL": "debug",
            "OPENMESSENGER_EPHEMERAL_HOLD_SECONDS": str(HOLD_SECONDS),
        },
    ).start()
    traces = Traces(node, database_url, data_dir)
    try:
        async with httpx.AsyncClient(base_url=node.url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
            alice, bob = await connected_pair(http)
            # The search finds what is stored: an ordinary message's body, in a
            # file and in a row (so finding nothing below means something).
            stored = (await bob.send(alice.address, marker())).json()["body"]
            control = await traces.search([stored[20:80]], needles(stored[20:80]))
            assert any("messages.body" in hit for hit in control), control
            assert any(hit.startswith("/") for hit in control), control

            olm = OlmPair.open(bob, alice)
            delivered_text, expired_text = marker(), marker()
            delivered_body = olm.body(delivered_text)
            expired_body = olm.body(expired_text)
            for text, body in ((delivered_text, delivered_body), (expired_text, expired_body)):
                texts, raw = ciphertext_needles(body)
                traces.watch([text, *texts], needles(text) + raw)

            # Alice is offline: the node holds it.
            sent = await send_ephemeral(bob, alice, delivered_body)
            assert sent.status_code == 202, sent.text
            await traces.assert_none("held, undelivered")

            [event] = await take(alice)
            assert olm.open_body(event["message"]["body"]).text == delivered_text
            await traces.assert_none("delivered")

            unread = await send_ephemeral(bob, alice, expired_body)
            assert unread.status_code == 202, unread.text
            await traces.assert_none("held again")
            [notice] = await take_within(bob, HOLD_SECONDS + MARGIN_SECONDS)
            assert (notice["type"], notice["id"]) == ("ephemeral.expired", unread.json()["id"])
            assert await take(alice) == []
            await traces.assert_none("expired")
    finally:
        node.stop()
    await traces.assert_none("after the node stopped")
    records: list[dict[str, Any]] = [json.loads(line) for line in node.log if line[:1] == "{"]
    # The node did log these requests (at debug level): only never their content.
    assert {(r.get("route"), r.get("status")) for r in records} >= {
        ("/v1/ephemeral", 202),
        ("/v1/ephemeral", 200),
    }
    assert len(traces.checked) == 5


def test_a_hold_above_120_seconds_is_refused_at_start(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "data", env={"OPENMESSENGER_EPHEMERAL_HOLD_SECONDS": "121"})

    with pytest.raises(RuntimeError, match="did not start"):
        node.start(timeout=60)

    assert any("ephemeral_hold_seconds" in line for line in node.log), node.log[-10:]
