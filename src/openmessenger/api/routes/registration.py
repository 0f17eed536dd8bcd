"""Registering an account: prove an e-mail address, a phone number or a TOTP
authenticator, and the anonymous account becomes registered (owned by a person
or an organisation)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from openmessenger.api import render
from openmessenger.api.deps import CurrentDevice, PersonDevice, Services
from openmessenger.core.records import OwnerKind
from openmessenger.protocol.client_api import API_PREFIX, MeOut
from openmessenger.protocol.registration_api import (
    IdentitiesOut,
    IdentityOut,
    OwnerKindStr,
    TotpConfirmIn,
    TotpSetupOut,
    VerificationConfirmIn,
    VerificationIn,
    VerificationOut,
)

router = APIRouter(prefix=API_PREFIX, tags=["registration"])

VerificationId = Annotated[str, Path(max_length=64)]


def _owner_kind(value: OwnerKindStr | None) -> OwnerKind | None:
    return OwnerKind(value) if value is not None else None


@router.post(
    "/account/verifications",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=VerificationOut,
)
async def start_verification(
    body: VerificationIn, caller: PersonDevice, services: Services
) -> VerificationOut:
    """Send a 6-digit code to an e-mail address or (``sms``) a phone number; it is
    valid for 10 minutes and 5 attempts. At most 5 codes per account, and 5 per
    recipient, in an hour (429 with Retry-After). 503 ``channel_not_configured``
    when the node does not send by that channel. The node keeps only an HMAC of
    the address or number."""
    pending = await services.registration.register_start(caller, body.channel, body.to)
    return VerificationOut(
        verification_id=pending.id, channel=pending.channel.value, expires_at=pending.expires_at
    )


@router.post("/account/verifications/{verification_id}/confirm", response_model=MeOut)
async def confirm_verification(
    verification_id: VerificationId,
    body: VerificationConfirmIn,
    caller: PersonDevice,
    services: Services,
) -> MeOut:
    """Confirm with the code received: the address or number becomes an identity
    of your account, which is registered (``owner_kind`` needed the first time).
    A wrong, expired, used or unknown code is the same 422 naming ``code``; 409
    ``identity_in_use`` if another account holds that identity."""
    account = await services.registration.register_confirm(
        caller, verification_id, body.code, _owner_kind(body.owner_kind), body.display_name
    )
    return render.me(account, caller.device.id)


@router.post("/account/totp", status_code=status.HTTP_201_CREATED, response_model=TotpSetupOut)
async def set_up_totp(caller: PersonDevice, services: Services) -> TotpSetupOut:
    """A new TOTP secret for an authenticator app (shown once; replaces one not yet
    confirmed). 409 ``totp_already_set`` once confirmed."""
    enrolment = await services.registration.totp_setup(caller)
    return TotpSetupOut(secret=enrolment.secret, uri=enrolment.uri)


@router.post("/account/totp/confirm", response_model=MeOut)
async def confirm_totp(body: TotpConfirmIn, caller: PersonDevice, services: Services) -> MeOut:
    """Confirm TOTP with a current code: the account is registered. A code is
    taken once; 5 wrong codes in a row lock TOTP for 30 to 60 s (429 with
    Retry-After), longer each further time."""
    account = await services.registration.totp_confirm(
        caller, body.code, _owner_kind(body.owner_kind)
    )
    return render.me(account, caller.device.id)


@router.get("/account/identities", response_model=IdentitiesOut)
async def identities(caller: CurrentDevice, services: Services) -> IdentitiesOut:
    """Your verified e-mail addresses and phone numbers: their kind and when. The
    node keeps only HMACs of them, so it cannot show the values."""
    found = await services.registration.identities(caller)
    return IdentitiesOut(
        identities=[IdentityOut(kind=i.kind.value, verified_at=i.verified_at) for i in found]
    )
