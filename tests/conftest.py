"""Shared fixtures: real databases (SQLite files and PostgreSQL) and real nodes."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from openmessenger.settings import Settings
from openmessenger.storage.database import Database, connect_and_migrate
from tests.support.node import NodeThread, SettableClock
from tests.support.postgres import create_database, postgres_server

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    try:
        with postgres_server() as url:
            yield url
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL could not start under CI: {exc!r}")
        pytest.skip(f"PostgreSQL could not start: {exc!r}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database of the parametrised backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'node.db'}"
    admin_url = request.getfixturevalue("postgres_admin_url")
    return asyncio.run(create_database(admin_url))


@pytest.fixture
def node_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        domain="localhost",
        data_dir=tmp_path / "node-data",
        database_url=database_url,
        node_secret=secrets.token_hex(32),
        log_level="warning",
    )


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def running_node(node_settings: Settings, clock: SettableClock) -> Iterator[NodeThread]:
    node = NodeThread(node_settings, clock=clock).start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def node_url(running_node: NodeThread) -> str:
    return running_node.url


@pytest.fixture
def cli_home(tmp_path: Path) -> Path:
    home = tmp_path / "cli-home"
    home.mkdir()
    return home


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """A migrated, empty database of the parametrised backend."""
    db = await connect_and_migrate(database_url)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
def dump(running_node: NodeThread) -> Callable[[], Awaitable[dict[str, list[dict[str, object]]]]]:
    """``await dump()``: every row of every table of the running node."""
    from tests.support.node import dump_database

    async def read() -> dict[str, list[dict[str, object]]]:
        assert running_node.node is not None
        return await running_node.call(dump_database(running_node.node))

    return read
