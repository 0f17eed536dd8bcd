"""Group commit: writes that arrive while a transaction is being written wait
and are written together in the next one.

A lone write happens at once (no timer, no added latency); under load the
batch grows to whatever arrived meanwhile, so the cost of a transaction is
shared. Every caller still hears back only after the commit that holds its
write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from openmessenger.core.envelope import AppendResult, ReceivedMessage, SendRequest
from openmessenger.services.ports import Transaction, UnitOfWork

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Res = TypeVar("Res")


class GroupCommit(Generic[Req, Res]):
    """Batches calls of ``write(tx, requests) -> one result per request``."""

    def __init__(
        self,
        uow: UnitOfWork,
        write: Callable[[Transaction, list[Req]], Awaitable[list[Res]]],
        *,
        max_batch: int = 256,
    ) -> None:
        self._uow = uow
        self._write_in = write
        self._max_batch = max_batch
        self._pending: list[tuple[Req, asyncio.Future[Res]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, request: Req) -> Res:
        future: asyncio.Future[Res] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_until_drained())
        # A caller that gives up does not cancel the write others share.
        return await asyncio.shield(future)

    async def _write_until_drained(self) -> None:
        while True:
            # Let every request that is ready reach ``append`` first: an inline
            # (SQLite) write never yields, so without this pause each batch
            # would hold only what arrived while the previous one was parsed.
            await asyncio.sleep(0)
            if not self._pending:
                return
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                results = await self._write([request for request, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    _settle_error(batch[0][1], exc)
                    continue
                log.warning("a batch of %d writes failed; writing them one by one", len(batch))
                for request, future in batch:
                    try:
                        (result,) = await self._write([request])
                    except Exception as one_exc:
                        _settle_error(future, one_exc)
                    else:
                        _settle(future, result)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                _settle(future, result)

    async def _write(self, requests: list[Req]) -> list[Res]:
        async with self._uow() as tx:
            results = await self._write_in(tx, requests)
            await tx.commit()
        return results


async def _append_sends(tx: Transaction, requests: list[SendRequest]) -> list[AppendResult]:
    return await tx.messages.append_batch(requests)


async def _append_received(
    tx: Transaction, received: list[ReceivedMessage]
) -> list[AppendResult | None]:
    return await tx.messages.append_received(received)


class GroupCommitMessageLog(GroupCommit[SendRequest, AppendResult]):
    """The ``MessageLog`` port: sends, appended in group commits."""

    def __init__(self, uow: UnitOfWork, *, max_batch: int = 256) -> None:
        super().__init__(uow, _append_sends, max_batch=max_batch)


class GroupCommitReceiveLog(GroupCommit[ReceivedMessage, AppendResult | None]):
    """Messages received over Openmsg, appended in group commits."""

    def __init__(self, uow: UnitOfWork, *, max_batch: int = 256) -> None:
        super().__init__(uow, _append_received, max_batch=max_batch)


def _settle(future: asyncio.Future[Res], result: Res) -> None:
    if not future.done():
        future.set_result(result)


def _settle_error(future: asyncio.Future[Res], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
