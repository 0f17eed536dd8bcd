"""Group commit: sends that arrive while a transaction is being written wait
and are written together in the next one.

A lone send is written at once (no timer, no added latency); under load the
batch grows to whatever arrived meanwhile, so the cost of a transaction is
shared. Every caller still hears back only after the commit that holds its
message.
"""

from __future__ import annotations

import asyncio
import logging

from openmessenger.core.envelope import AppendResult, SendRequest
from openmessenger.services.ports import UnitOfWork

log = logging.getLogger(__name__)

_Pending = tuple[SendRequest, "asyncio.Future[AppendResult]"]


class GroupCommitMessageLog:
    """The ``MessageLog`` port over a ``UnitOfWork``."""

    def __init__(self, uow: UnitOfWork, *, max_batch: int = 256) -> None:
        self._uow = uow
        self._max_batch = max_batch
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, request: SendRequest) -> AppendResult:
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
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
                log.warning("a batch of %d sends failed; writing them one by one", len(batch))
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

    async def _write(self, requests: list[SendRequest]) -> list[AppendResult]:
        async with self._uow() as tx:
            results = await tx.messages.append_batch(requests)
            await tx.commit()
        return results


def _settle(future: asyncio.Future[AppendResult], result: AppendResult) -> None:
    if not future.done():
        future.set_result(result)


def _settle_error(future: asyncio.Future[AppendResult], error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
