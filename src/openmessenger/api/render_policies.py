"""Plans and policies as the API shows them (protocol/policies_api.py)."""

from __future__ import annotations

from openmessenger.protocol.policies_api import AdminAccountOut, PolicyOut
from openmessenger.services.policies import AccountPolicy


def admin_account(found: AccountPolicy) -> AdminAccountOut:
    return AdminAccountOut(
        address=found.account.address,
        kind=found.account.kind.value,
        plan=found.plan.value,
        policy=PolicyOut.of(found.policy),
    )
