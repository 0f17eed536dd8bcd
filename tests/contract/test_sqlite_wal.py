"""SQLite's write-ahead log is folded into the database file off the event loop."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from openmessenger.storage.database import connect_and_migrate


async def test_commits_reach_the_database_file_itself(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    database = await connect_and_migrate(f"sqlite:///{path}")
    async with database.connect() as conn:
        # Commits on the node's connection never checkpoint: the WAL holds them.
        assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 0
    async with database.uow() as tx:
        for i in range(50):
            await tx.connections.create_conversation(f"c{i:031d}", datetime.now(UTC))
        await tx.commit()
    await database.dispose()  # stops the checkpointer after a last pass

    # The database file alone, without its -wal, already holds every commit.
    alone = tmp_path / "alone.db"
    shutil.copyfile(path, alone)
    with sqlite3.connect(alone) as copy:
        assert copy.execute("SELECT count(*) FROM conversations").fetchone() == (50,)
