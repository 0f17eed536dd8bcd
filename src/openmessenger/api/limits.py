"""Refuse oversize request bodies before anything acts on them."""

from __future__ import annotations

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openmessenger.api.errors import problem_response


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self._max):
            await self._refuse(scope, receive, send)
            return

        # A body without a (truthful) length is counted as it arrives. Past the
        # limit the app is told the client went away — so it acts on nothing,
        # not even a valid prefix — and whatever it answers becomes the 413.
        seen = 0
        too_large = False
        refused = False

        async def counted_receive() -> Message:
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._max:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def refuse_once() -> None:
            nonlocal refused
            if not refused:
                refused = True
                await self._refuse(scope, receive, send)

        async def guarded_send(message: Message) -> None:
            if too_large:
                await refuse_once()
            else:
                await send(message)

        try:
            await self._app(scope, counted_receive, guarded_send)
        except ClientDisconnect:
            if not too_large:
                raise
        if too_large:
            await refuse_once()

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            "Request body too large",
            "body_too_large",
            f"The body must be at most {self._max} bytes.",
            field="body",
        )
        await response(scope, receive, send)
