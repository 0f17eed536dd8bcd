"""SDK clients as the tests open them."""

from __future__ import annotations

import os
from typing import Any

from openmessenger.client import Client

# The SDK's 10 s default is for users; the whole suite shares two loaded cores
# with its nodes and databases, where one request can stall for seconds. A hang
# still fails, just later.
REQUEST_TIMEOUT_SECONDS = 30.0


def sdk_client(server_url: str, state_dir: str | os.PathLike[str], **options: Any) -> Client:
    options.setdefault("timeout", REQUEST_TIMEOUT_SECONDS)
    return Client(server_url, state_dir, **options)
