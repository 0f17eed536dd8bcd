"""docs/apps.md's curl guide, run verbatim with bash, curl and jq against a real
node process: an app makes a user's account, gets a pass code for them, a
friend connects, the app sends, the reply arrives by a signed webhook, and the
app deletes the user's data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openmessenger.protocol.webhooks_api import verify_signature
from tests.support.apps import create_app, registered
from tests.support.node import SettableClock
from tests.support.process import NodeProcess
from tests.support.sdk import REQUEST_TIMEOUT_SECONDS
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.e2e

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "apps.md"


def guide_blocks() -> list[str]:
    section = GUIDE.read_text().split("**2. The rest, with curl alone.**", 1)[1]
    section = section.split("## Five minutes with the SDK", 1)[0]
    return [part.split("```", 1)[0] for part in section.split("```sh\n")[1:]]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver().start()
    try:
        yield server
    finally:
        server.stop()


def test_the_guide_has_the_steps_it_promises() -> None:
    create_and_send, delete = guide_blocks()
    for step in ("/accounts", "/webhook", "/v1/codes", "connect", "/v1/messages", "/v1/sync"):
        assert step in create_and_send, step
    assert "/data" in delete


@pytest.mark.skipif(
    (shutil.which("curl") is None or shutil.which("jq") is None) and os.environ.get("CI") != "true",
    reason="needs curl and jq",
)
async def test_the_curl_guide_works_verbatim(tmp_path: Path, receiver: WebhookReceiver) -> None:
    node = NodeProcess(tmp_path / "node").start()
    try:
        async with httpx.AsyncClient(base_url=node.url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
            # Step 1 of the guide, done here: a registered owner and the app's key.
            app = await create_app(await registered(http, SettableClock()), "shop")
            env = {
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "HOME": str(tmp_path),
                "NODE": node.url,
                "API_KEY": app.key,
                "WEBHOOK_URL": receiver.webhook_url(),
                "OPENMESSENGER_HOME": str(tmp_path / "cli"),
                "OPENMESSENGER_SERVER": node.url,
            }
            create_and_send, delete = guide_blocks()
            first = _bash(create_and_send + 'echo "USER_ID=$USER_ID"; echo "SECRET=$secret"\n', env)
            lines = first.stdout.splitlines()
            assert "Thanks!" in lines, first.stdout
            values = dict(line.split("=", 1) for line in lines if "=" in line)

            call = await receiver.next()
            signature = call.header("Openmessenger-Signature")
            assert signature is not None
            assert verify_signature(values["SECRET"], signature, call.body, int(time.time()))
            payload = json.loads(call.body)
            assert payload["account_id"] == values["USER_ID"]
            assert payload["message"]["body"] == "Thanks!"

            user_id = values["USER_ID"]
            _bash(
                f'USER_ID={user_id}\nas_app=(-H "Authorization: Bearer $API_KEY")\n' + delete, env
            )
            gone = await http.get(f"/v1/apps/shop/accounts/{user_id}", headers=app.auth)
            assert gone.status_code == 404
    finally:
        node.stop()


def _bash(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result
