"""Bad input gets a problem+json 4xx naming the field, never a 500, and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support.api import Dump, connected_pair, register

PROBLEM = "application/problem+json"


def assert_problem(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["code"] == code and body["title"]
    if field is not None:
        assert body["field"] == field, body


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"to": 42, "body": "x"}, "to"),
        ({"to": "not an address", "body": "x"}, "to"),
        ({"to": "12*bad_domain.io", "body": "x"}, "to"),
        ({"to": "1*", "body": "x"}, "to"),
        ({"body": "x"}, "to"),
        ({"to": "1*localhost", "body": ""}, "body"),
        ({"to": "1*localhost", "body": ["x"]}, "body"),
        ({"to": "1*localhost", "body": "x" * 70_000}, "body"),
        ({"to": "1*localhost", "body": "x", "client_txn_id": ""}, "client_txn_id"),
        ({"to": "1*localhost", "body": "x", "client_txn_id": "a b"}, "client_txn_id"),
        ({"to": "1*localhost", "body": "x", "client_txn_id": "t\x00x"}, "client_txn_id"),
        ({"to": "1*localhost", "body": "a\x00b"}, "body"),
        ({"to": "42\n*localhost", "body": "x"}, "to"),
        ({"to": "1*localhost", "body": "x", "surprise": 1}, "surprise"),
    ],
)
async def test_bad_sends_name_the_field(
    http: httpx.AsyncClient, dump: Dump, payload: dict[str, Any], field: str
) -> None:
    _, bob = await connected_pair(http)
    before = await dump()
    assert_problem(await bob.post("/v1/messages", payload), 422, "invalid_input", field)
    assert await dump() == before


async def test_malformed_json_and_oversize_bodies(http: httpx.AsyncClient, dump: Dump) -> None:
    alice, bob = await connected_pair(http)
    before = await dump()
    headers = {**bob.auth, "content-type": "application/json"}
    malformed = await http.post("/v1/messages", content=b'{"to": "1*x", ', headers=headers)
    assert_problem(malformed, 400, "malformed_json")
    oversize = await http.post(
        "/v1/messages", content=b"{" + b" " * 1_100_000 + b"}", headers=headers
    )
    assert_problem(oversize, 413, "body_too_large", "body")

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(110):
            yield b" " * 10_000

    streamed = await http.post("/v1/messages", content=chunks(), headers=headers)
    assert_problem(streamed, 413, "body_too_large", "body")

    async def valid_then_padding():  # a valid send, then more than the limit allows
        yield json.dumps({"to": alice.address, "body": "smuggled"}).encode()
        for _ in range(110):
            yield b" " * 10_000

    padded = await http.post("/v1/messages", content=valid_then_padding(), headers=headers)
    assert_problem(padded, 413, "body_too_large", "body")
    assert await dump() == before


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "code", "field"),
    [
        (
            "post",
            "/v1/connections",
            {"address": "x", "pass_code": "123456"},
            422,
            "invalid_input",
            "address",
        ),
        (
            "post",
            "/v1/connections",
            {"address": "1*localhost", "pass_code": "12345"},
            422,
            "invalid_input",
            "pass_code",
        ),
        (
            "post",
            "/v1/connections",
            {"address": "1*localhost", "pass_code": 123456},
            422,
            "invalid_input",
            "pass_code",
        ),
        ("post", "/v1/codes", {"for": "nobody"}, 422, "invalid_input", "for"),
        ("patch", "/v1/me", {"display_name": "x" * 41}, 422, "invalid_input", "display_name"),
        (
            "patch",
            "/v1/me",
            {"display_name": "Robert'); DROP"},
            422,
            "invalid_input",
            "display_name",
        ),
        ("get", "/v1/sync?since=-1", None, 422, "invalid_input", "since"),
        ("get", "/v1/sync?limit=100000", None, 422, "invalid_input", "limit"),
        ("get", "/v1/sync?since=abc", None, 422, "invalid_input", "since"),
        ("get", "/v1/sync?since=18446744073709551616", None, 422, "invalid_input", "since"),
        (
            "post",
            "/v1/messages",
            {"to": "1234567890*localhost", "body": "plain", "encryption": "end-to-end"},
            422,
            "invalid_input",
            "body",
        ),
        (
            "post",
            "/v1/messages",
            {"to": "1234567890*localhost", "body": "x", "encryption": "sideways"},
            422,
            "invalid_input",
            "encryption",
        ),
        ("get", "/v1/conversations/nope/messages", None, 404, "not_found", None),
        ("delete", "/v1/codes/nope", None, 404, "not_found", None),
        ("get", "/v1/nothing-here", None, 404, "not_found", None),
    ],
)
async def test_bad_requests_are_problems(
    http: httpx.AsyncClient,
    dump: Dump,
    method: str,
    path: str,
    payload: Any,
    status: int,
    code: str,
    field: str | None,
) -> None:
    device = await register(http)
    before = await dump()
    kwargs: dict[str, Any] = {"headers": device.auth}
    if payload is not None:
        kwargs["json"] = payload
    assert_problem(await http.request(method, path, **kwargs), status, code, field)
    assert await dump() == before


async def test_unknown_devices_and_missing_tokens_are_refused(http: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        assert_problem(await http.get("/v1/me", headers=headers), 401, "unauthenticated")
    assert_problem(
        await http.post("/v1/messages", json={"to": "1*localhost", "body": "x"}),
        401,
        "unauthenticated",
    )
