"""Engine construction and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from openmessenger.storage.repositories import SqlTransaction

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> URL:
    """Accept the spellings people paste and pick our async driver."""
    parsed = make_url(url)
    if parsed.drivername in {"postgres", "postgresql", "postgresql+psycopg2", "postgresql+psycopg"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    if parsed.drivername not in {"postgresql+asyncpg", "sqlite+aiosqlite"}:
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")
    return parsed


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def create_engine(url: str, *, sqlite_synchronous: str = "NORMAL") -> AsyncEngine:
    parsed = normalise_url(url)
    if parsed.drivername.startswith("sqlite"):
        return _create_sqlite_engine(parsed, sqlite_synchronous)
    return create_async_engine(parsed, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _create_sqlite_engine(url: URL, synchronous: str) -> AsyncEngine:
    if synchronous not in {"NORMAL", "FULL"}:
        raise ValueError("sqlite synchronous must be NORMAL or FULL")
    # SQLite has one writer: one pooled connection serialises our transactions
    # in-process instead of failing them with "database is locked".
    engine = create_async_engine(url, pool_size=1, max_overflow=0)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so SAVEPOINTs work and
        # BEGIN IMMEDIATE is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
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


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent)."""

    def upgrade(sync_conn: Any) -> None:
        config = alembic_config()
        config.attributes["connection"] = sync_conn
        command.upgrade(config, "head")

    async with engine.begin() as conn:
        await conn.run_sync(upgrade)


class SqlUnitOfWork:
    """The ``UnitOfWork`` port over one engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[SqlTransaction]:
        async with self._engine.connect() as conn:
            await conn.begin()
            yield SqlTransaction(conn)
            # Leaving without commit(): the connection's close rolls back.


async def connect_and_migrate(url: str, **engine_options: Any) -> AsyncEngine:
    engine = create_engine(url, **engine_options)
    await migrate(engine)
    return engine
