"""What every repository shares: the connection it runs on."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError


class SqlConnection(Protocol):
    """What the repositories need of a connection: an ``AsyncConnection``
    (PostgreSQL) or the inline SQLite connection of ``storage.database``."""

    async def execute(self, statement: Any, parameters: Any = None) -> CursorResult[Any]: ...

    def begin_nested(self) -> AbstractAsyncContextManager[Any]: ...

    async def commit(self) -> None: ...


class Repository:
    def __init__(self, conn: SqlConnection) -> None:
        self._conn = conn

    async def _insert_unique(self, statement: Any) -> bool:
        """Run an INSERT; False if it hit a unique constraint (nothing else changes)."""
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(statement)
        except IntegrityError:
            return False
        return True
