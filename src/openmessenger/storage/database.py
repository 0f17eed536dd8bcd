"""The database: engines, migrations and units of work, for SQLite (the
embedded default) and PostgreSQL.

SQLite runs *inline* on the event loop through the stdlib driver. Its
statements take microseconds, while handing each one to a worker thread (as
aiosqlite does) costs hundreds of microseconds of CPU and latency; one node
process owns the file, so transactions simply run one after another. The
repositories see the same ``execute`` either way: an ``AsyncConnection`` for
PostgreSQL (asyncpg), an :class:`InlineConnection` for SQLite.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, CursorResult, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from openmessenger.storage.grant_keys import GrantKeys
from openmessenger.storage.repositories import SqlTransaction

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_SQLITE_SPELLINGS = {"sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"}
_POSTGRES_SPELLINGS = {"postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"}


def normalise_url(url: str) -> URL:
    """Accept the spellings people paste and pick our driver."""
    parsed = make_url(url)
    if parsed.drivername in _POSTGRES_SPELLINGS:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername in _SQLITE_SPELLINGS:
        parsed = parsed.set(drivername="sqlite+pysqlite")
    if parsed.drivername not in {"postgresql+asyncpg", "sqlite+pysqlite"}:
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")
    return parsed


def is_sqlite(url: str) -> bool:
    return normalise_url(url).drivername.startswith("sqlite")


class InlineConnection:
    """A synchronous SQLAlchemy connection behind the async ``execute`` the
    repositories use; nothing in it yields to the event loop."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def execute(self, statement: Any, parameters: Any = None) -> CursorResult[Any]:
        return self._conn.execute(statement, parameters)

    async def begin(self) -> None:
        self._conn.begin()

    @asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        with self._conn.begin_nested():
            yield

    async def commit(self) -> None:
        self._conn.commit()

    async def run_sync(self, fn: Any, *args: Any) -> Any:
        return fn(self._conn, *args)


@dataclass
class Database:
    """One node's database: ``uow()`` opens a transaction, ``connect()`` a plain connection."""

    url: URL
    async_engine: AsyncEngine | None = None
    sync_engine: Engine | None = None
    grant_keys: GrantKeys | None = None
    """Where app grants' keys are (the node sets it; operator tools that never read
    app data may leave it out)."""

    def __post_init__(self) -> None:
        # The inline SQLite connection is one object: this lock keeps a second
        # transaction from starting before the first ends, should one ever await.
        self._inline_lock = asyncio.Lock()

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[Any]:
        if self.sync_engine is not None:
            async with self._inline_lock:
                with self.sync_engine.connect() as conn:
                    yield InlineConnection(conn)
        else:
            assert self.async_engine is not None
            async with self.async_engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def uow(self) -> AsyncIterator[SqlTransaction]:
        """The ``UnitOfWork`` port: leaving without ``commit()`` rolls back."""
        async with self.connect() as conn:
            # Closing the connection (leaving ``connect``) rolls back what was not committed.
            await conn.begin()
            yield SqlTransaction(conn, self.grant_keys)

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        async with self.connect() as conn:
            await conn.run_sync(_upgrade)
            await conn.commit()

    async def dispose(self) -> None:
        if self.async_engine is not None:
            await self.async_engine.dispose()
        if self.sync_engine is not None:
            self.sync_engine.dispose()


def open_database(url: str, *, sqlite_synchronous: str = "NORMAL") -> Database:
    parsed = normalise_url(url)
    if parsed.drivername.startswith("sqlite"):
        return Database(parsed, sync_engine=_sqlite_engine(parsed, sqlite_synchronous))
    engine = create_async_engine(parsed, pool_size=10, max_overflow=10, pool_pre_ping=True)
    return Database(parsed, async_engine=engine)


def _sqlite_engine(url: URL, synchronous: str) -> Engine:
    if synchronous not in {"NORMAL", "FULL"}:
        raise ValueError("sqlite synchronous must be NORMAL or FULL")
    engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so SAVEPOINTs work and
        # BEGIN IMMEDIATE is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Deleted and overwritten content is zeroed, not left in free space: a
        # message deleted for everyone leaves no ciphertext in the file (revisions).
        cursor.execute("PRAGMA secure_delete=ON")
        # Another process holding the write lock (an operator's command) makes
        # us wait at most this long, on the event loop: keep it short.
        cursor.execute("PRAGMA busy_timeout=2000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = normalise_url(url).render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def _upgrade(sync_conn: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = sync_conn
    command.upgrade(config, "head")


async def connect_and_migrate(url: str, **options: Any) -> Database:
    database = open_database(url, **options)
    await database.migrate()
    return database
