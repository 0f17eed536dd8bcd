"""Rate limits per device, per account and per API key: 429 with Retry-After."""

from __future__ import annotations

import httpx
import pytest

from openmessenger.settings import Settings
from tests.support.api import register
from tests.support.apps import create_app, registered
from tests.support.node import SettableClock


@pytest.fixture
def node_settings(node_settings: Settings) -> Settings:
    return node_settings.model_copy(
        update={
            "device_rate_limit": "20/minute",
            "account_rate_limit": "1000/minute",
            "app_key_rate_limit": "8/minute",
        }
    )


async def test_a_device_past_its_limit_is_told_when_to_come_back(
    http: httpx.AsyncClient,
) -> None:
    device = await register(http, "Busy")  # registration itself is not a device request
    answers = [(await device.get("/v1/me")).status_code for _ in range(25)]
    assert answers.count(200) == 19  # the sealing key upload at registration counted once
    assert set(answers[19:]) == {429}
    limited = await device.get("/v1/me")
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Another device is not slowed by it.
    assert (await (await register(http, "Calm")).get("/v1/me")).status_code == 200


async def test_an_api_key_has_its_own_limit_across_the_accounts_it_acts_for(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    owner = await registered(http, clock)
    app = await create_app(owner, "shop")
    first = await app.create_account()
    second = await app.create_account()
    # Two account creations already counted against the key.
    statuses = []
    for i in range(8):
        account = first if i % 2 else second
        statuses.append((await app.act(account["account_id"], "GET", "/v1/me")).status_code)
    assert statuses.count(200) == 6
    assert statuses[6:] == [429, 429]
    limited = await app.act(first["account_id"], "GET", "/v1/me")
    assert limited.json()["code"] == "rate_limited" and "Retry-After" in limited.headers
    # Another key of the same app is counted apart.
    other = await owner.post("/v1/apps/shop/keys", {"label": "second worker"})
    assert other.status_code == 201
    headers = {**app.acting(first["account_id"]), "Authorization": f"Bearer {other.json()['key']}"}
    assert (await http.get("/v1/me", headers=headers)).status_code == 200
