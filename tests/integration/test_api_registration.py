"""Registered accounts over the real HTTP API: codes by e-mail (a real SMTP
server), by SMS (a real webhook receiver) and TOTP, and the attacks on them."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pyotp
import pytest
from pydantic import SecretStr

from openmessenger.settings import Settings
from tests.support.api import ApiDevice, Dump, register, rows_mentioning
from tests.support.node import SettableClock
from tests.support.sms import SmsGateway
from tests.support.smtp import SmtpServer

SMS_SECRET = "a webhook secret the operator shares with the gateway"
PROBLEM = "application/problem+json"
CODE_TTL = timedelta(minutes=10)


@pytest.fixture
def sms_gateway() -> Iterator[SmsGateway]:
    gateway = SmsGateway().start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def channels() -> frozenset[str]:
    """The channels the node is configured to send by (a test may override)."""
    return frozenset({"email", "sms"})


@pytest.fixture
def node_settings(
    node_settings: Settings,
    smtp_server: SmtpServer,
    sms_gateway: SmsGateway,
    channels: frozenset[str],
) -> Settings:
    update: dict[str, object] = {}
    if "email" in channels:
        update.update(smtp_host=smtp_server.host, smtp_port=smtp_server.port, smtp_starttls=False)
    if "sms" in channels:
        update.update(sms_webhook_url=sms_gateway.url, sms_webhook_secret=SecretStr(SMS_SECRET))
    return node_settings.model_copy(update=update)


# --- helpers -------------------------------------------------------------------------


def code_in(text: str) -> str:
    found = re.search(r"\b([0-9]{6})\b", text)
    assert found, text
    return found.group(1)


def another_code(*codes: str) -> str:
    """A well-formed code that is none of ``codes``."""
    return next(c for c in (f"{n:06d}" for n in range(10**6)) if c not in codes)


def assert_problem(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, object] = response.json()
    assert body["code"] == code, body
    if field is not None:
        assert body["field"] == field, body
    return body


def assert_wrong_code(response: httpx.Response) -> None:
    body = assert_problem(response, 422, "invalid_input", "code")
    assert body["detail"] == "is wrong or expired"


async def start(device: ApiDevice, channel: str, to: str) -> httpx.Response:
    return await device.post("/v1/account/verifications", {"channel": channel, "to": to})


async def confirm(
    device: ApiDevice,
    verification_id: str,
    code: str,
    owner_kind: str | None = "person",
    **extra: str,
) -> httpx.Response:
    body: dict[str, str] = {"code": code, **extra}
    if owner_kind is not None:
        body["owner_kind"] = owner_kind
    return await device.post(f"/v1/account/verifications/{verification_id}/confirm", body)


async def email_code(device: ApiDevice, smtp: SmtpServer, to: str) -> tuple[str, str]:
    """Start an e-mail verification; the id and the code read from the real mail."""
    started = await start(device, "email", to)
    assert started.status_code == 202, started.text
    mail = smtp.next_mail()
    assert mail.rcpt_tos == [to.strip().lower()]
    return started.json()["verification_id"], code_in(mail.text)


async def me(device: ApiDevice) -> dict[str, object]:
    response = await device.get("/v1/me")
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def identity_kinds(device: ApiDevice) -> list[str]:
    response = await device.get("/v1/account/identities")
    assert response.status_code == 200, response.text
    return [i["kind"] for i in response.json()["identities"]]


def totp_code(secret: str, at: datetime) -> str:
    return pyotp.TOTP(secret).at(at)


# --- registering -----------------------------------------------------------------------


async def test_an_emailed_code_registers_the_account(
    http: httpx.AsyncClient, smtp_server: SmtpServer, clock: SettableClock
) -> None:
    alice = await register(http, "Alice")
    assert (await me(alice))["kind"] == "anonymous"
    assert (await me(alice))["owner_kind"] is None

    started = await start(alice, "email", "  Alice.Liddell@Example.ORG ")
    assert started.status_code == 202, started.text
    body = started.json()
    assert set(body) == {"verification_id", "channel", "expires_at"}
    assert body["channel"] == "email"
    expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert expires_at == clock.now() + CODE_TTL

    mail = smtp_server.next_mail()
    assert mail.rcpt_tos == ["alice.liddell@example.org"]
    assert mail.message["From"] == "openmessenger@localhost"
    code = code_in(mail.text)

    # The first registration needs to say who owns the account; the code survives.
    unowned = await confirm(alice, body["verification_id"], code, None)
    assert_problem(unowned, 422, "invalid_input", "owner_kind")
    confirmed = await confirm(alice, body["verification_id"], code, display_name="Alice Liddell")
    assert confirmed.status_code == 200, confirmed.text
    expected = {
        "address": alice.address,
        "display_name": "Alice Liddell",
        "device_id": alice.device_id,
        "kind": "registered",
        "owner_kind": "person",
    }
    assert confirmed.json() == expected
    assert await me(alice) == expected
    assert await identity_kinds(alice) == ["email"]


async def test_a_texted_code_registers_the_account_through_the_signed_webhook(
    http: httpx.AsyncClient, sms_gateway: SmsGateway, clock: SettableClock
) -> None:
    acme = await register(http, "Acme")
    started = await start(acme, "sms", "+44 7700-900.123")
    assert started.status_code == 202, started.text
    assert started.json()["channel"] == "sms"

    call = sms_gateway.next_call()
    timestamp = call.headers["X-Openmessenger-Timestamp"]
    assert timestamp == str(int(clock.now().timestamp()))
    mac = hmac.new(SMS_SECRET.encode(), f"{timestamp}.".encode() + call.body, hashlib.sha256)
    assert call.headers["X-Openmessenger-Signature"] == f"sha256={mac.hexdigest()}"
    assert call.headers["Content-Type"] == "application/json"
    sms = call.json()
    assert set(sms) == {"to", "text"}
    assert sms["to"] == "+447700900123"

    confirmed = await confirm(
        acme, started.json()["verification_id"], code_in(sms["text"]), "organisation"
    )
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["kind"], confirmed.json()["owner_kind"]) == (
        "registered",
        "organisation",
    )
    assert await identity_kinds(acme) == ["phone"]


async def test_a_registered_account_adds_identities_and_keeps_its_owner_kind(
    http: httpx.AsyncClient, smtp_server: SmtpServer, sms_gateway: SmsGateway
) -> None:
    alice = await register(http)
    verification_id, code = await email_code(alice, smtp_server, "alice@example.org")
    assert (await confirm(alice, verification_id, code, "person")).status_code == 200

    started = await start(alice, "sms", "+15550100200")
    assert started.status_code == 202, started.text
    text = sms_gateway.next_call().json()["text"]
    added = await confirm(alice, started.json()["verification_id"], code_in(text), None)
    assert added.status_code == 200, added.text
    assert (added.json()["kind"], added.json()["owner_kind"]) == ("registered", "person")
    assert sorted(await identity_kinds(alice)) == ["email", "phone"]

    verification_id, code = await email_code(alice, smtp_server, "billing@example.org")
    changed = await confirm(alice, verification_id, code, "organisation")
    assert changed.json()["owner_kind"] == "organisation"
    assert (await me(alice))["owner_kind"] == "organisation"


async def test_totp_registers_the_account_and_each_code_works_once(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    acme = await register(http)
    first = await acme.post("/v1/account/totp")
    assert first.status_code == 201, first.text
    # Asked again before confirming: a new secret replaces the first.
    setup = await acme.post("/v1/account/totp")
    assert setup.status_code == 201, setup.text
    secret = setup.json()["secret"]
    assert secret != first.json()["secret"]
    assert len(secret) == 32
    otp = pyotp.parse_uri(setup.json()["uri"])
    assert isinstance(otp, pyotp.TOTP)
    assert (otp.secret, otp.issuer, otp.name) == (secret, "localhost", acme.address)

    stale = await acme.post(
        "/v1/account/totp/confirm",
        {"code": totp_code(first.json()["secret"], clock.now()), "owner_kind": "person"},
    )
    assert_wrong_code(stale)

    code = totp_code(secret, clock.now())
    confirmed = await acme.post(
        "/v1/account/totp/confirm", {"code": code, "owner_kind": "organisation"}
    )
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["kind"], confirmed.json()["owner_kind"]) == (
        "registered",
        "organisation",
    )

    # Replayed: refused, though it is still within its time window.
    assert_wrong_code(await acme.post("/v1/account/totp/confirm", {"code": code}))
    # The next step's code is accepted once (clocks drift); then not again.
    upcoming = totp_code(secret, clock.now() + timedelta(seconds=30))
    assert (await acme.post("/v1/account/totp/confirm", {"code": upcoming})).status_code == 200
    assert_wrong_code(await acme.post("/v1/account/totp/confirm", {"code": upcoming}))
    clock.advance(timedelta(seconds=60))
    later = totp_code(secret, clock.now())
    assert (await acme.post("/v1/account/totp/confirm", {"code": later})).status_code == 200

    assert_problem(await acme.post("/v1/account/totp"), 409, "totp_already_set")
    assert (await me(acme))["owner_kind"] == "organisation"


async def test_wrong_totp_codes_lock_it_for_a_while(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    bob = await register(http)
    secret = (await bob.post("/v1/account/totp")).json()["secret"]
    valid = [totp_code(secret, clock.now() + timedelta(seconds=s)) for s in (-30, 0, 30)]
    wrong = another_code(*valid)
    for _ in range(5):
        answer = await bob.post("/v1/account/totp/confirm", {"code": wrong, "owner_kind": "person"})
        assert_wrong_code(answer)

    right = {"code": totp_code(secret, clock.now()), "owner_kind": "person"}
    locked = await bob.post("/v1/account/totp/confirm", right)
    assert_problem(locked, 429, "rate_limited")
    retry_after = int(locked.headers["Retry-After"])
    assert 30 <= retry_after <= 60
    assert (await me(bob))["kind"] == "anonymous"

    clock.advance(timedelta(seconds=retry_after))
    right = {"code": totp_code(secret, clock.now()), "owner_kind": "person"}
    unlocked = await bob.post("/v1/account/totp/confirm", right)
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json()["kind"] == "registered"


# --- attacks on codes ------------------------------------------------------------------


async def test_five_wrong_codes_kill_the_verification(
    http: httpx.AsyncClient, smtp_server: SmtpServer
) -> None:
    mallory = await register(http)
    verification_id, code = await email_code(mallory, smtp_server, "victim@example.org")
    for _ in range(5):
        assert_wrong_code(await confirm(mallory, verification_id, another_code(code)))
    assert_wrong_code(await confirm(mallory, verification_id, code))
    assert (await me(mallory))["kind"] == "anonymous"
    assert await identity_kinds(mallory) == []


async def test_an_expired_code_is_refused(
    http: httpx.AsyncClient, smtp_server: SmtpServer, clock: SettableClock
) -> None:
    alice = await register(http)
    verification_id, code = await email_code(alice, smtp_server, "alice@example.org")
    clock.advance(CODE_TTL)
    assert_wrong_code(await confirm(alice, verification_id, code))
    assert (await me(alice))["kind"] == "anonymous"


async def test_a_used_code_is_refused(http: httpx.AsyncClient, smtp_server: SmtpServer) -> None:
    alice = await register(http)
    verification_id, code = await email_code(alice, smtp_server, "alice@example.org")
    assert (await confirm(alice, verification_id, code)).status_code == 200
    assert_wrong_code(await confirm(alice, verification_id, code, "organisation"))
    assert (await me(alice))["owner_kind"] == "person"


async def test_nobody_confirms_another_accounts_verification(
    http: httpx.AsyncClient, smtp_server: SmtpServer
) -> None:
    alice, mallory = await register(http), await register(http)
    verification_id, code = await email_code(alice, smtp_server, "alice@example.org")

    refusals = [await confirm(mallory, verification_id, code)]
    refusals += [await confirm(mallory, verification_id, another_code(code)) for _ in range(5)]
    refusals.append(await confirm(mallory, "0" * 32, code))
    refusals.append(await confirm(mallory, "not-an-id", code))
    for refusal in refusals:
        assert_wrong_code(refusal)
    # One answer for all: the refusals tell nothing apart.
    assert len({r.text for r in refusals}) == 1
    assert (await me(mallory))["kind"] == "anonymous"

    # Mallory's attempts did not count against Alice's code.
    assert (await confirm(alice, verification_id, code)).status_code == 200
    assert await identity_kinds(mallory) == []


async def test_an_identity_of_another_account_is_in_use_and_nothing_changes(
    http: httpx.AsyncClient, smtp_server: SmtpServer, dump: Dump
) -> None:
    alice, bob = await register(http, "Alice"), await register(http, "Bob")
    verification_id, code = await email_code(alice, smtp_server, "shared@example.org")
    assert (await confirm(alice, verification_id, code)).status_code == 200

    verification_id, code = await email_code(bob, smtp_server, " Shared@Example.org")
    before = await dump()
    taken = await confirm(bob, verification_id, code, "organisation", display_name="Bobby")
    assert_problem(taken, 409, "identity_in_use")
    after = await dump()
    for table in ("accounts", "account_identities", "verifications"):
        assert after[table] == before[table], table
    assert (await me(bob))["kind"] == "anonymous"
    assert (await me(bob))["display_name"] == "Bob"
    assert await identity_kinds(bob) == []
    assert await identity_kinds(alice) == ["email"]


async def test_sends_are_limited_per_account_and_per_recipient(
    http: httpx.AsyncClient, smtp_server: SmtpServer, clock: SettableClock
) -> None:
    mallory = await register(http)
    verification_id, code = await email_code(mallory, smtp_server, "a0@example.org")
    for n in range(1, 5):
        await email_code(mallory, smtp_server, f"a{n}@example.org")
    # Killing a verification with wrong codes does not give its send back.
    for _ in range(5):
        assert_wrong_code(await confirm(mallory, verification_id, another_code(code)))

    refused = await start(mallory, "email", "a5@example.org")
    assert_problem(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert smtp_server.pending() == 0  # nothing was sent

    clock.advance(timedelta(hours=1))
    await email_code(mallory, smtp_server, "a5@example.org")

    # Many fresh accounts cannot flood one inbox either.
    for _ in range(5):
        await email_code(await register(http), smtp_server, "victim@example.org")
    flood = await start(await register(http), "email", "VICTIM@example.org")
    assert_problem(flood, 429, "rate_limited")
    assert int(flood.headers["Retry-After"]) >= 1
    assert smtp_server.pending() == 0


@pytest.mark.parametrize("channels", [frozenset()])
async def test_a_channel_the_node_does_not_send_by_is_unavailable(
    http: httpx.AsyncClient, smtp_server: SmtpServer, sms_gateway: SmsGateway
) -> None:
    alice = await register(http)
    for channel, to in (("email", "alice@example.org"), ("sms", "+447700900123")):
        assert_problem(await start(alice, channel, to), 503, "channel_not_configured")
    assert (smtp_server.pending(), sms_gateway.pending()) == (0, 0)
    # TOTP needs no channel.
    assert (await alice.post("/v1/account/totp")).status_code == 201


async def test_a_refused_delivery_is_an_error_and_leaves_no_code(
    http: httpx.AsyncClient, smtp_server: SmtpServer, sms_gateway: SmsGateway, dump: Dump
) -> None:
    alice = await register(http)
    smtp_server.refuse_recipients()
    assert_problem(await start(alice, "email", "alice@example.org"), 503, "delivery_failed")
    sms_gateway.status = 500
    assert_problem(await start(alice, "sms", "+447700900123"), 503, "delivery_failed")
    assert sms_gateway.pending() == 1  # the gateway was asked, and said no
    assert (await dump())["verifications"] == []

    smtp_server.refuse_recipients(False)
    await email_code(alice, smtp_server, "alice@example.org")


async def test_bad_addresses_and_numbers_name_the_field(
    http: httpx.AsyncClient, smtp_server: SmtpServer, sms_gateway: SmsGateway, dump: Dump
) -> None:
    alice = await register(http)
    bad = [
        ("email", "alice"),
        ("email", "alice@@example.org"),
        ("email", "alice@example"),
        ("email", "al ice@example.org"),
        ("email", "alice@example.org\r\nBcc: everyone@example.org"),
        ("email", "a" * 250 + "@example.org"),
        ("email", ""),
        ("sms", "07700 900123"),
        ("sms", "+44 7700"),
        ("sms", "+44 7700 900123 4567"),
        ("sms", "+44 77OO 900123"),
        ("sms", "+0 7700 900123"),
    ]
    for channel, to in bad:
        assert_problem(await start(alice, channel, to), 422, "invalid_input", "to")
    assert_problem(
        await alice.post("/v1/account/verifications", {"channel": "fax", "to": "+4477009"}),
        422,
        "invalid_input",
        "channel",
    )
    assert (smtp_server.pending(), sms_gateway.pending()) == (0, 0)
    assert (await dump())["verifications"] == []


async def test_registration_needs_a_device_token(http: httpx.AsyncClient) -> None:
    for method, path in (
        ("POST", "/v1/account/verifications"),
        ("POST", f"/v1/account/verifications/{'0' * 32}/confirm"),
        ("POST", "/v1/account/totp"),
        ("POST", "/v1/account/totp/confirm"),
        ("GET", "/v1/account/identities"),
    ):
        answer = await http.request(method, path, headers={"Authorization": "Bearer nope"})
        assert_problem(answer, 401, "unauthenticated")


# --- what the node keeps ---------------------------------------------------------------


async def test_no_address_number_code_or_secret_is_stored_in_plain_text(
    http: httpx.AsyncClient,
    smtp_server: SmtpServer,
    sms_gateway: SmsGateway,
    clock: SettableClock,
    dump: Dump,
) -> None:
    email, phone = "Carol.Secret@Example.org", "+44 7700 900 456"
    carol = await register(http)
    needles = [email, email.lower(), "carol.secret", phone, "+447700900456", "447700900456"]

    # A code that expires unused, one refused, one used.
    expired_id, expired_code = await email_code(carol, smtp_server, email)
    clock.advance(CODE_TTL)
    assert_wrong_code(await confirm(carol, expired_id, expired_code))
    verification_id, code = await email_code(carol, smtp_server, email)
    wrong = another_code(code)
    assert_wrong_code(await confirm(carol, verification_id, wrong))
    assert (await confirm(carol, verification_id, code)).status_code == 200
    started = await start(carol, "sms", phone)
    texted = code_in(sms_gateway.next_call().json()["text"])
    assert (await confirm(carol, started.json()["verification_id"], texted)).status_code == 200
    needles += [expired_code, code, wrong, texted]

    dave = await register(http)
    secret = (await dave.post("/v1/account/totp")).json()["secret"]
    totp = totp_code(secret, clock.now())
    answer = await dave.post("/v1/account/totp/confirm", {"code": totp, "owner_kind": "person"})
    assert answer.status_code == 200
    needles += [secret, secret.lower(), secret.rstrip("=")[:16], totp]

    stored = await dump()
    # What was proven is there, as HMACs and a sealed secret...
    assert len(stored["account_identities"]) == 2
    assert len(stored["totp_secrets"]) == 1
    # ...and nothing of it in the clear, in any column of any table.
    for needle in needles:
        assert rows_mentioning(stored, needle) == [], needle
    assert all(needle not in json.dumps(stored, default=str) for needle in needles)
