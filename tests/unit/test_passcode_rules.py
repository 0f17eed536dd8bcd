"""The pass-code guess budget: whatever an attacker and an owner do, the chance
that a live code is ever guessed stays at most GUESS_BUDGET / CODE_SPACE <= 1e-5
(DESIGN.md section 7)."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction

import pytest

from openmessenger.core import passcodes as rules
from openmessenger.core.passcodes import (
    CODE_DIGITS,
    CODE_SPACE,
    GUESS_BUDGET,
    MAX_LIVE_CODES,
    is_well_formed,
    must_withdraw_before_check,
    spend_after_failure,
)

MAX_GUESS_CHANCE = Fraction(1, 10**5)
POOL_SIZES = range(1, MAX_LIVE_CODES + 1)


def test_constants_give_the_openmsg_format_and_the_promised_bound() -> None:
    assert CODE_DIGITS == 6
    assert CODE_SPACE == 10**CODE_DIGITS
    assert rules.CODE_TTL_SECONDS == 3600
    assert Fraction(GUESS_BUDGET, CODE_SPACE) <= MAX_GUESS_CHANCE


def test_a_full_pool_can_always_be_checked_once_at_the_start_of_a_period() -> None:
    # Otherwise an owner with MAX_LIVE_CODES codes out could never be reached.
    assert not must_withdraw_before_check(0, MAX_LIVE_CODES)


def test_an_empty_pool_is_never_withdrawn_and_its_budget_restarts_at_zero() -> None:
    for spent in range(GUESS_BUDGET + 3):
        assert not must_withdraw_before_check(spent, 0)
        assert spend_after_failure(spent, 0) == 0


@pytest.mark.parametrize("live", POOL_SIZES)
def test_a_failure_spends_one_unit_per_live_code(live: int) -> None:
    for spent in range(GUESS_BUDGET - live + 1):
        assert spend_after_failure(spent, live) == spent + live


@pytest.mark.parametrize("live", POOL_SIZES)
def test_the_whole_budget_is_usable_before_codes_are_withdrawn(live: int) -> None:
    """An owner's contact who mistypes is not locked out early: exactly
    GUESS_BUDGET // live failed checks pass before the pool is withdrawn."""
    spent = 0
    checks = 0
    while not must_withdraw_before_check(spent, live):
        spent = spend_after_failure(spent, live)
        checks += 1
        assert checks <= GUESS_BUDGET, "the budget never ran out"
    assert checks == GUESS_BUDGET // live
    assert spent + live > GUESS_BUDGET


def test_every_sequence_of_pool_sizes_stays_within_the_budget() -> None:
    """Explores every state reachable by any sequence of events, of any length.

    State: (spent, exposure). ``spent`` is what the rules store; ``exposure`` is
    computed independently: the sum of live codes over the failed checks since
    the pool last had no live codes. Events:

    * a check against L live codes (1..MAX_LIVE_CODES; the owner may have issued or
      lost codes since the last check) following the rules: withdraw first if
      ``must_withdraw_before_check``, otherwise fail and ``spend_after_failure``;
    * the pool emptying by use or expiry and being refilled later, the stored
      budget either reset (as the pairing service does when a code is issued into
      an empty pool) or carried over.

    Union bound: in each period the chance any code is guessed is at most
    exposure / CODE_SPACE, which must stay <= GUESS_BUDGET / CODE_SPACE <= 1e-5.
    """
    start = (0, 0)
    seen = {start}
    queue = deque([start])
    violations = []
    while queue:
        spent, exposure = queue.popleft()
        successors = [(0, 0), (spent, 0)]  # pool emptied; budget reset or carried over
        for live in POOL_SIZES:
            if must_withdraw_before_check(spent, live):
                # Every live code is withdrawn: the pool is empty and the check
                # then fails against nothing.
                successors.append((spend_after_failure(spent, 0), 0))
                continue
            new_exposure = exposure + live
            if new_exposure > GUESS_BUDGET:
                violations.append((spent, exposure, live))
                continue
            successors.append((spend_after_failure(spent, live), new_exposure))
        for state in successors:
            if state not in seen:
                seen.add(state)
                queue.append(state)
    assert violations == []
    # Sanity of the exploration itself: the budget can actually be exhausted.
    assert max(exposure for _, exposure in seen) == GUESS_BUDGET
    assert all(Fraction(exposure, CODE_SPACE) <= MAX_GUESS_CHANCE for _, exposure in seen)


@dataclass
class _Code:
    exposure: int = 0  # failed checks made while this code was live


@dataclass
class _Pool:
    """One pool as the pairing service keeps it: live codes and the stored budget."""

    reset_on_new_period: bool
    live: list[_Code] = field(default_factory=list)
    spent: int = 0
    period_exposure: int = 0
    withdrawals: int = 0
    checks: int = 0

    def issue(self) -> None:
        if len(self.live) >= MAX_LIVE_CODES:
            return
        if not self.live:
            self.period_exposure = 0
            if self.reset_on_new_period:
                self.spent = 0
        self.live.append(_Code())

    def use_or_expire(self, rng: random.Random) -> _Code | None:
        if not self.live:
            return None
        return self.live.pop(rng.randrange(len(self.live)))

    def failed_check(self) -> None:
        self.checks += 1
        if must_withdraw_before_check(self.spent, len(self.live)):
            self.withdrawals += 1
            self.live.clear()
            self.spent = 0
        for code in self.live:
            code.exposure += 1
        self.period_exposure += len(self.live)
        self.spent = spend_after_failure(self.spent, len(self.live))


@pytest.mark.parametrize("reset_on_new_period", [True, False])
@pytest.mark.parametrize("seed", range(40))
def test_simulated_attacker_never_gets_more_than_the_budget(
    seed: int, reset_on_new_period: bool
) -> None:
    """An attacker with unlimited identities hammers one pool while its owner
    issues codes and contacts redeem them; no code ever faces more than
    GUESS_BUDGET failed checks, and no period more than GUESS_BUDGET units."""
    rng = random.Random(seed)
    pool = _Pool(reset_on_new_period=reset_on_new_period)
    attack_rate = rng.choice([0.3, 0.6, 0.9])
    retired: list[_Code] = []
    for _ in range(3000):
        roll = rng.random()
        if roll < attack_rate:
            pool.failed_check()
        elif roll < attack_rate + (1 - attack_rate) * 0.6:
            pool.issue()
        else:
            code = pool.use_or_expire(rng)
            if code is not None:
                retired.append(code)
        assert pool.period_exposure <= GUESS_BUDGET
        assert 0 <= pool.spent <= GUESS_BUDGET
        assert len(pool.live) <= MAX_LIVE_CODES
    every_code = retired + pool.live
    assert every_code, "the owner never issued a code"
    assert max(code.exposure for code in every_code) <= GUESS_BUDGET
    assert all(Fraction(c.exposure, CODE_SPACE) <= MAX_GUESS_CHANCE for c in every_code)
    # The attack really reached the limit, or the test proves nothing.
    assert pool.withdrawals > 0


# --- is_well_formed --------------------------------------------------------------


@pytest.mark.parametrize("code", ["000000", "123456", "999999", "048213"])
def test_six_ascii_digits_are_well_formed(code: str) -> None:
    assert is_well_formed(code)


@pytest.mark.parametrize(
    "code",
    [
        "",
        "12345",
        "1234567",
        "12345a",
        " 12345",
        "12345 ",
        "123 45",
        "12345\n",
        "-12345",
        "+12345",
        "1234.5",
        "\uff11\uff12\uff13\uff14\uff15\uff16",  # fullwidth digits
        "\u0661\u0662\u0663\u0664\u0665\u0666",  # Arabic-Indic digits
        "\u00b9\u00b2\u00b3\u2074\u2075\u2076",  # superscripts: str.isdigit() is True
    ],
)
def test_anything_but_six_ascii_digits_is_malformed(code: str) -> None:
    assert not is_well_formed(code)
