"""A background task that works off what is due in rounds: at once while a round
says more may be due, else after a kick or the poll interval (other processes'
work is found by polling). A round that fails is logged and tried again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0


def backoff_seconds(attempts: int, rng: random.Random) -> float:
    """Before the next try of something that failed ``attempts`` times: 1 s, 2 s,
    4 s ... up to a minute, each ±20 % (so that retries do not march in step)."""
    return min(MAX_BACKOFF_SECONDS, 2.0 ** min(max(0, attempts - 1), 16)) * rng.uniform(0.8, 1.2)


async def any_more_due(deliveries: Iterable[Awaitable[bool]], failure: str) -> bool:
    """Await a round's deliveries together, each failure logged (the others go
    on); True when any says more may be due at once."""
    results = await asyncio.gather(*deliveries, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            log.error(failure, exc_info=result)
    return any(r is True for r in results)


class PollingLoop:
    def __init__(
        self, name: str, work_round: Callable[[], Awaitable[bool]], poll_seconds: float
    ) -> None:
        """``work_round`` does one pass and says whether more may be due now."""
        self._name = name
        self._round = work_round
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """Something became due: run a round now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before the round: a kick during it is not lost
            busy = False
            try:
                busy = await self._round()
            except Exception:
                log.exception("%s: a round failed; retrying", self._name)
            if busy:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
