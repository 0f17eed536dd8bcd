"""The pure rules of registration: how addresses and numbers are normalised
(one identity, one HMAC), and TOTP time steps and lockouts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from openmessenger.core.errors import InvalidInput
from openmessenger.services.registration import (
    TOTP_MAX_LOCK_STEPS,
    normalise_email,
    normalise_phone,
    totp_lock_steps,
    totp_step,
)


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("alice@example.org", "alice@example.org"),
        ("  Alice.Liddell@Example.ORG\n", "alice.liddell@example.org"),
        ("o'brien+tag@mail.example.co.uk", "o'brien+tag@mail.example.co.uk"),
        ("zoë@exämple.de", "zoë@exämple.de"),
    ],
)
def test_an_email_address_is_trimmed_and_lower_cased(typed: str, normalised: str) -> None:
    assert normalise_email(typed) == normalised


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "alice",
        "@example.org",
        "alice@",
        "alice@@example.org",
        "alice@bob@example.org",
        "alice@example",
        "alice@.example.org",
        "alice@example..org",
        "alice@-example.org",
        ".alice@example.org",
        "al..ice@example.org",
        "al ice@example.org",
        "alice@example.org\r\nBcc: x@example.org",
        "<alice@example.org>",
        "Alice <alice@example.org>",
        "a" * 65 + "@example.org",
        "alice@" + "a" * 250 + ".org",
    ],
)
def test_what_is_not_an_email_address_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        normalise_email(bad)
    assert refused.value.field == "to"


def test_the_longest_email_address_is_254_characters() -> None:
    longest = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 61 + ".org"
    assert len(longest) == 258
    with pytest.raises(InvalidInput):
        normalise_email(longest)
    fits = longest[4:]
    assert len(fits) == 254 and normalise_email(fits) == fits


@pytest.mark.parametrize(
    ("typed", "normalised"),
    [
        ("+447700900123", "+447700900123"),
        (" +44 7700 900123 ", "+447700900123"),
        ("+44 (7700) 900-123", "+447700900123"),
        ("+1.555.010.0200", "+15550100200"),
        ("+12345678", "+12345678"),
        ("+123456789012345", "+123456789012345"),
    ],
)
def test_a_phone_number_becomes_e164(typed: str, normalised: str) -> None:
    assert normalise_phone(typed) == normalised


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "447700900123",
        "07700 900123",
        "+1234567",
        "+1234567890123456",
        "+0447700900123",
        "+44 77OO 900123",
        "++447700900123",
        "+44/7700/900123",
        "+44 7700 900123 ext 5",
    ],
)
def test_what_is_not_an_e164_number_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        normalise_phone(bad)
    assert refused.value.field == "to"


def test_the_totp_step_is_the_one_authenticator_apps_use() -> None:
    totp = pyotp.TOTP(pyotp.random_base32())
    start = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    for seconds in (0, 29, 30, 59.999, 61, 3600):
        moment = start + timedelta(seconds=seconds)
        assert totp_step(moment) == totp.timecode(moment)
        assert totp.generate_otp(totp_step(moment)) == totp.at(moment)


def test_wrong_totp_codes_lock_for_longer_each_time() -> None:
    assert [totp_lock_steps(n) for n in range(1, 5)] == [0, 0, 0, 0]
    assert [totp_lock_steps(n) for n in (5, 6, 9, 10, 15, 20)] == [1, 0, 0, 2, 4, 8]
    assert totp_lock_steps(5 * 100) == TOTP_MAX_LOCK_STEPS
