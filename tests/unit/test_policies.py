"""The pure rules of plans and policies (core/policies.py) and the ``plans``
setting (TOML and environment)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from openmessenger.core.errors import InvalidInput
from openmessenger.core.policies import (
    MessageTooLarge,
    Plan,
    Policy,
    PolicyNotStricter,
    PolicyOverride,
    check_body_size,
    check_override,
    parse_plan,
    parse_rate,
    strictest,
)
from openmessenger.plan_settings import DEFAULTS
from openmessenger.settings import Settings

BASE = Policy(
    retention_seconds=3600,
    max_participants=10,
    max_message_bytes=1000,
    message_rate=parse_rate("60/minute"),
)
FOREVER = Policy(
    retention_seconds=None,
    max_participants=100,
    max_message_bytes=5000,
    message_rate=parse_rate("10/second"),
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONFIG", "PLANS", "RETENTION_SWEEP_SECONDS"):
        monkeypatch.delenv(f"OPENMESSENGER_{name}", raising=False)


def test_plans_are_named_exactly() -> None:
    assert [parse_plan(p) for p in ("free", "subscription", "usage")] == list(Plan)
    for bad in ("Free", "gold", "", " free"):
        with pytest.raises(InvalidInput) as raised:
            parse_plan(bad)
        assert raised.value.field == "plan"


@pytest.mark.parametrize(
    ("text", "count", "unit"),
    [("60/minute", 60, "minute"), (" 5 per hour ", 5, "hour"), ("1/seconds", 1, "second")],
)
def test_rates_read_like_the_limits_notation(text: str, count: int, unit: str) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.unit) == (count, unit)


@pytest.mark.parametrize("text", ["fast", "0/minute", "-1/minute", "5/fortnight", "1.5/hour", 5])
def test_bad_rates_name_the_field(text: object) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_rate(text)
    assert raised.value.field == "message_rate"


def test_rates_compare_across_units() -> None:
    assert parse_rate("1/minute").stricter_or_equal(parse_rate("60/hour"))
    assert parse_rate("60/hour").stricter_or_equal(parse_rate("1/minute"))
    assert not parse_rate("2/minute").stricter_or_equal(parse_rate("100/hour"))
    assert parse_rate("100/day").stricter_or_equal(parse_rate("5/hour"))


def test_the_stricter_of_two_policies_takes_each_limit_from_the_stricter() -> None:
    mixed = Policy(None, 5, 9000, parse_rate("2/second"))
    combined = BASE.stricter(mixed)
    assert combined == Policy(3600, 5, 1000, parse_rate("60/minute"))
    assert strictest([FOREVER, mixed, BASE]) == combined
    # "Forever" never wins over a limit.
    assert FOREVER.stricter(BASE).retention_seconds == 3600
    assert FOREVER.stricter(FOREVER).retention_seconds is None


def test_an_override_narrows_and_never_loosens() -> None:
    assert BASE.narrowed(PolicyOverride()) == BASE
    narrowed = BASE.narrowed(
        PolicyOverride(retention_seconds=60, message_rate=parse_rate("1/hour"))
    )
    assert narrowed == Policy(60, 10, 1000, parse_rate("1/hour"))
    # Even an override that was never checked cannot loosen what it is laid on.
    assert BASE.narrowed(PolicyOverride(max_message_bytes=10**6)) == BASE


@pytest.mark.parametrize(
    ("override", "field"),
    [
        (PolicyOverride(retention_seconds=3601), "retention_seconds"),
        (PolicyOverride(max_participants=11), "max_participants"),
        (PolicyOverride(max_message_bytes=1001), "max_message_bytes"),
        (PolicyOverride(message_rate=parse_rate("2/second")), "message_rate"),
        (
            PolicyOverride(max_message_bytes=10, message_rate=parse_rate("61/minute")),
            "message_rate",
        ),
    ],
)
def test_a_looser_override_is_refused_naming_the_field(
    override: PolicyOverride, field: str
) -> None:
    with pytest.raises(PolicyNotStricter) as raised:
        check_override(BASE, override)
    assert raised.value.field == field
    assert raised.value.code == "policy_not_stricter"


def test_an_equal_or_stricter_override_is_taken() -> None:
    same = PolicyOverride(3600, 10, 1000, parse_rate("1/second"))
    assert check_override(BASE, same) == same
    # Any retention is stricter than forever.
    assert check_override(FOREVER, PolicyOverride(retention_seconds=10**9)).retention_seconds


def test_the_body_is_measured_in_utf8_bytes() -> None:
    check_body_size(BASE, "é" * 500)
    with pytest.raises(MessageTooLarge) as raised:
        check_body_size(BASE, "é" * 501)
    assert (raised.value.field, raised.value.code) == ("body", "message_too_large")


# --- the plans setting ---------------------------------------------------------------------


def test_without_settings_each_plan_has_its_defaults(tmp_path: Path) -> None:
    policies = Settings(data_dir=tmp_path).plans.policies()
    assert policies == DEFAULTS
    # Nothing is deleted unless the operator chose a retention: an upgraded node
    # keeps the history it had.
    assert policies[Plan.FREE].retention_seconds is None
    assert policies[Plan.SUBSCRIPTION].retention_seconds is None
    assert policies[Plan.USAGE].retention_seconds == 365 * 86_400


def test_plans_from_toml_keep_the_defaults_of_what_they_leave_out(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        "[plans.free]\n"
        "retention_days = 7\n"
        'message_rate = "20/minute"\n'
        "[plans.subscription]\n"
        "max_participants = 500\n"
        "[plans.usage]\n"
        'retention_days = "forever"\n'
    )
    policies = Settings(data_dir=tmp_path, config=config).plans.policies()
    assert policies[Plan.FREE] == Policy(
        7 * 86_400,
        DEFAULTS[Plan.FREE].max_participants,
        DEFAULTS[Plan.FREE].max_message_bytes,
        parse_rate("20/minute"),
    )
    assert policies[Plan.SUBSCRIPTION].max_participants == 500
    assert policies[Plan.SUBSCRIPTION].retention_seconds is None
    assert policies[Plan.USAGE].retention_seconds is None


def test_plans_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENMESSENGER_PLANS", '{"free": {"retention_days": 0.5}}')
    monkeypatch.setenv("OPENMESSENGER_RETENTION_SWEEP_SECONDS", "60")
    settings = Settings(data_dir=tmp_path)
    assert settings.plans.policies()[Plan.FREE].retention_seconds == 43_200
    assert settings.retention_sweep_seconds == 60


@pytest.mark.parametrize(
    ("plans", "where"),
    [
        ({"gold": {}}, "gold"),
        ({"free": {"retention_days": 0}}, "retention_days"),
        ({"free": {"retention_days": "never"}}, "retention_days"),
        ({"free": {"max_participants": 1}}, "max_participants"),
        ({"free": {"max_message_bytes": 10**7}}, "max_message_bytes"),
        ({"free": {"message_rate": "lots"}}, "message_rate"),
        ({"free": {"colour": "red"}}, "colour"),
    ],
)
def test_bad_plan_settings_are_refused_at_start(
    plans: dict[str, object], where: str, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError, match=where):
        Settings(data_dir=tmp_path, plans=plans)  # type: ignore[arg-type]
