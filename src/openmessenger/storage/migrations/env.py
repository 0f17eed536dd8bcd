"""Alembic environment: run by ``storage.database.migrate`` with a live connection,
or by the ``alembic`` command with the URL from ``alembic.ini``/the environment."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from openmessenger.storage.tables import metadata

config = context.config


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs need batches
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


def _run_url(url: str) -> None:
    if url.startswith("sqlite"):  # the stdlib driver, as the node uses it
        with create_engine(url).begin() as conn:
            _run(conn)
    else:
        asyncio.run(_run_async(url))


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    _run_url(config.get_main_option("sqlalchemy.url") or "")
