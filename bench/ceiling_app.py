"""The ceiling: a raw ASGI echo app, no framework. It parses a ~300-byte JSON
body and answers JSON, served by the same server software as the node; its
requests/s is the denominator of every ratio in the report."""

from __future__ import annotations

from typing import Any

import orjson


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    payload = orjson.loads(body) if body else {}
    answer = orjson.dumps({"ok": True, "echo": payload})
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": answer})
