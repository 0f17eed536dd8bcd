"""Pass-code rules, pure arithmetic. The service applies them; docs/security.md
derives the bound from these numbers.

A code is ``CODE_DIGITS`` decimal digits (the Openmsg v1 format), single use,
live for ``CODE_TTL_SECONDS``. An owner holds at most ``MAX_LIVE_CODES`` live
codes. Codes are *open* (anyone holding them may connect) or *bound* to the one
address expected to use them.

An owner's live codes fall into pools: the open pool, and one pool per bound
address. A redemption by address X can only ever match codes in the open pool
or in X's pool, so only those pools pay for X's failures.

Guess budget. Before a redemption is checked against a pool holding L live
codes, the pool must still have L units of its ``GUESS_BUDGET`` left;
otherwise every live code in it is withdrawn first. A failed check then spends
L units (one guess can hit any of the L codes). A pool that empties starts
again at zero. By the union bound, the chance that any code in a pool is
guessed while that pool has live codes is at most ``GUESS_BUDGET /
CODE_SPACE`` = 1e-5, whoever guesses and from however many identities or
domains. Nobody but X can spend X's pool, so a code bound to X is neither
guessable by others nor withdrawn by their failures.
"""

from __future__ import annotations

import enum

CODE_DIGITS = 6
CODE_SPACE: int = 10**CODE_DIGITS
CODE_TTL_SECONDS = 3600
MAX_LIVE_CODES = 10
GUESS_BUDGET = 10
OPEN_POOL = ""


class CodeState(enum.StrEnum):
    LIVE = "live"
    USED = "used"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


def must_withdraw_before_check(spent: int, live_codes: int) -> bool:
    """True when a pool cannot afford one more check: withdraw its codes first."""
    return live_codes > 0 and spent + live_codes > GUESS_BUDGET


def spend_after_failure(spent: int, live_codes: int) -> int:
    """Budget spent in a pool after one failed check against its live codes."""
    return spent + live_codes if live_codes > 0 else 0


def is_well_formed(code: str) -> bool:
    return len(code) == CODE_DIGITS and code.isascii() and code.isdigit()
