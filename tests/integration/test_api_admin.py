"""The operator API (``/v1/admin/``) attacked directly over real HTTP: without the
operator token, with a wrong one, with a device's or an app's token instead, and
with bad input."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from openmessenger.settings import Settings
from tests.support.api import register
from tests.support.apps import create_app, registered
from tests.support.node import NodeThread, SettableClock
from tests.support.sdk import REQUEST_TIMEOUT_SECONDS

OPERATOR_TOKEN = "operator-token-for-api-tests-0123456789"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

# Every endpoint, with a body it would accept.
ENDPOINTS: list[tuple[str, str, Any]] = [
    ("GET", "/v1/admin/maintenance", None),
    ("PUT", "/v1/admin/maintenance", {"on": True}),
    ("GET", "/v1/admin/domains", None),
    ("PUT", "/v1/admin/domains/spam.example", None),
    ("DELETE", "/v1/admin/domains/spam.example", None),
    ("POST", "/v1/admin/apps", {"owner": "1234567*localhost", "id": "shop", "name": "Shop"}),
    ("GET", "/v1/admin/apps", None),
    ("GET", "/v1/admin/apps/shop/keys", None),
    ("POST", "/v1/admin/apps/shop/keys", {}),
    ("DELETE", "/v1/admin/apps/shop/keys/k1", None),
    ("POST", "/v1/admin/apps/shop/keys/k1/rotate", {}),
    ("GET", "/v1/admin/apps/shop/media-types", None),
    ("POST", "/v1/admin/apps/shop/media-types", {"name": "order", "schema": {"type": "object"}}),
]


@pytest.fixture
def node_settings(node_settings: Settings) -> Settings:
    return node_settings.model_copy(update={"operator_token": SecretStr(OPERATOR_TOKEN)})


async def call(
    http: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    return await http.request(method, path, json=body, headers=headers)


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


async def test_without_the_operator_token_nothing_is_done_or_shown(
    http: httpx.AsyncClient, clock: SettableClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="httpcore")  # the test's own client, verbose
    device = await registered(http, clock)
    app = await create_app(device, "shop")
    wrong = "operator-token-for-api-tests-012345678X"  # one character off
    attempts = {
        "no header": {},
        "no token": {"Authorization": "Bearer"},
        "another scheme": {"Authorization": f"Basic {OPERATOR_TOKEN}"},
        "wrong token": {"Authorization": f"Bearer {wrong}"},
        "a prefix": {"Authorization": f"Bearer {OPERATOR_TOKEN[:-1]}"},
        "a longer one": {"Authorization": f"Bearer {OPERATOR_TOKEN}0"},
        "a device token": device.auth,
        "an app's API key": app.auth,
    }
    # Every kind of attempt on a switch and on an app endpoint; a wrong token and
    # none on every endpoint.
    tried = [(e, what) for e in (ENDPOINTS[1], ENDPOINTS[5]) for what in attempts]
    tried += [(e, what) for e in ENDPOINTS for what in ("no header", "wrong token")]
    for (method, path, body), what in tried:
        answer = await call(http, method, path, body, attempts[what])
        assert answer.status_code == 401, (what, method, path, answer.text)
        assert answer.json()["code"] == "operator_token_invalid"
        assert answer.headers["www-authenticate"] == "Bearer"
    # Nothing changed, and no token is in any log line.
    assert (await http.get("/v1/admin/maintenance", headers=OPERATOR)).json() == {"on": False}
    assert (await http.get("/v1/admin/domains", headers=OPERATOR)).json() == {"domains": []}
    assert wrong not in caplog.text and OPERATOR_TOKEN not in caplog.text
    # The token is checked before the body is even read.
    garbage = await http.post(
        "/v1/admin/apps", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    problem(garbage, 401, "operator_token_invalid")


async def test_a_node_without_an_operator_token_has_no_operator_api(
    node_settings: Settings, clock: SettableClock
) -> None:
    node = NodeThread(node_settings.model_copy(update={"operator_token": None}), clock=clock)
    node.start()
    try:
        async with httpx.AsyncClient(base_url=node.url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
            for method, path, body in ENDPOINTS:
                for headers in ({}, OPERATOR):
                    answer = await call(http, method, path, body, headers)
                    problem(answer, 404, "operator_api_disabled")
            schema = (await http.get("/v1/openapi.json")).json()
    finally:
        node.stop()
    assert not [p for p in schema["paths"] if p.startswith("/v1/admin")]


async def test_the_operator_makes_an_app_for_a_registered_account(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    owner = await registered(http, clock)
    made = await http.post(
        "/v1/admin/apps",
        json={"owner": owner.address, "id": "shop", "name": "Shop"},
        headers=OPERATOR,
    )
    assert made.status_code == 201, made.text
    created = made.json()
    # The same answer as POST /v1/apps.
    assert set(created) == {"app", "api_key", "signing_seed"}
    assert created["api_key"]["key"].startswith("omk_") and created["signing_seed"]
    assert (await owner.get("/v1/apps")).json()["apps"] == [created["app"]]
    listed = (await http.get("/v1/admin/apps", headers=OPERATOR)).json()["apps"]
    assert listed == [{**created["app"], "owner": owner.address}]
    other = await register(http, "Other")
    mine = await http.get("/v1/admin/apps", params={"owner": other.address}, headers=OPERATOR)
    assert mine.json() == {"apps": []}

    key = await http.post(
        "/v1/admin/apps/shop/keys", json={"scopes": ["data"], "label": "backup"}, headers=OPERATOR
    )
    assert key.status_code == 201 and key.json()["scopes"] == ["data"]
    revoked = await http.delete(f"/v1/admin/apps/shop/keys/{key.json()['id']}", headers=OPERATOR)
    assert revoked.status_code == 204
    keys = (await http.get("/v1/admin/apps/shop/keys", headers=OPERATOR)).json()["keys"]
    assert [k["revoked_at"] is not None for k in keys if k["id"] == key.json()["id"]] == [True]

    schema = await http.get("/v1/openapi.json")
    assert "/v1/admin/apps" in schema.json()["paths"]


async def test_bad_input_is_a_problem_naming_the_field(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    owner = await registered(http, clock)
    anonymous = await register(http, "Anon")

    async def post(path: str, body: Any) -> httpx.Response:
        return await http.post(path, json=body, headers=OPERATOR)

    app = {"owner": owner.address, "id": "shop", "name": "Shop"}
    for field, value in [("id", "Shop!"), ("owner", "alice"), ("name", ""), ("signing_key", "x")]:
        answer = await post("/v1/admin/apps", {**app, field: value})
        assert problem(answer, 422, "invalid_input")["field"] == field
    extra = await post("/v1/admin/apps", {**app, "admin": True})
    assert problem(extra, 422, "invalid_input")["field"] == "admin"
    unknown = await post("/v1/admin/apps", {**app, "owner": "1234567*localhost"})
    problem(unknown, 404, "account_not_found")
    problem(
        await post("/v1/admin/apps", {**app, "owner": anonymous.address}),
        403,
        "registration_required",
    )
    assert (await post("/v1/admin/apps", app)).status_code == 201
    problem(await post("/v1/admin/apps", app), 409, "app_exists")

    maintenance = await http.put("/v1/admin/maintenance", json={"on": "maybe"}, headers=OPERATOR)
    assert problem(maintenance, 422, "invalid_input")["field"] == "on"
    domain = await http.put("/v1/admin/domains/not_a%20domain", headers=OPERATOR)
    assert problem(domain, 422, "invalid_input")["field"] == "domain"
    malformed = await http.post(
        "/v1/admin/apps",
        content=b"{not json",
        headers={**OPERATOR, "Content-Type": "application/json"},
    )
    problem(malformed, 400, "malformed_json")

    problem(await http.get("/v1/admin/apps/nope/keys", headers=OPERATOR), 404, "app_not_found")
    scopes = await post("/v1/admin/apps/shop/keys", {"scopes": ["everything"]})
    assert problem(scopes, 422, "invalid_input")["field"].startswith("scopes")
    problem(await post("/v1/admin/apps/shop/keys", {"scopes": []}), 422, "invalid_input")
    long_label = await post("/v1/admin/apps/shop/keys", {"label": "x" * 65})
    assert problem(long_label, 422, "invalid_input")["field"] == "label"
    gone = await http.delete("/v1/admin/apps/shop/keys/no-such-key", headers=OPERATOR)
    problem(gone, 404, "api_key_not_found")
    grace = await post("/v1/admin/apps/shop/keys/k1/rotate", {"grace_seconds": -1})
    assert problem(grace, 422, "invalid_input")["field"] == "grace_seconds"
    problem(await post("/v1/admin/apps/shop/keys/k1/rotate", {}), 404, "api_key_not_found")

    media = "/v1/admin/apps/shop/media-types"
    not_object = await post(media, {"name": "order", "schema": {"type": "array"}})
    assert problem(not_object, 422, "invalid_input")["field"] == "schema.type"
    remote_ref = await post(
        media, {"name": "order", "schema": {"type": "object", "$ref": "https://example.org/s"}}
    )
    assert problem(remote_ref, 422, "invalid_input")["field"] == "schema.$ref"
    bad_name = await post(media, {"name": "Order!", "schema": {"type": "object"}})
    assert problem(bad_name, 422, "invalid_input")["field"] == "name"
    problem(
        await post("/v1/admin/apps/nope/media-types", {"name": "o", "schema": {"type": "object"}}),
        404,
        "app_not_found",
    )
    assert (await post(media, {"name": "order", "schema": {"type": "object"}})).status_code == 201
    assert (await http.get(media, headers=OPERATOR)).json()["media_types"][0]["name"] == (
        "app.shop.order"
    )


async def test_switches_over_the_api(http: httpx.AsyncClient) -> None:
    on = await http.put("/v1/admin/maintenance", json={"on": True}, headers=OPERATOR)
    assert on.json() == {"on": True}
    assert (await http.get("/v1/admin/maintenance", headers=OPERATOR)).json() == {"on": True}
    blocked = await http.put("/v1/admin/domains/Spam.Example.", headers=OPERATOR)
    assert blocked.json() == {"domain": "spam.example", "blocked": True, "changed": True}
    again = await http.put("/v1/admin/domains/spam.example", headers=OPERATOR)
    assert again.json()["changed"] is False
    listed = await http.get("/v1/admin/domains", headers=OPERATOR)
    assert listed.json() == {"domains": ["spam.example"]}
    unblocked = await http.delete("/v1/admin/domains/spam.example", headers=OPERATOR)
    assert unblocked.json() == {"domain": "spam.example", "blocked": False, "changed": True}
