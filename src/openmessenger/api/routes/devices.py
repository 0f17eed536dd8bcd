"""Device onboarding and the caller's profile."""

from __future__ import annotations

from fastapi import APIRouter, status

from openmessenger.api import render
from openmessenger.api.deps import CurrentDevice, Services
from openmessenger.protocol.client_api import (
    API_PREFIX,
    ChallengeOut,
    DeviceKeys,
    DeviceSessionOut,
    MeOut,
    RegisterDeviceIn,
    SetNameIn,
)
from openmessenger.services.devices import DeviceSession

router = APIRouter(prefix=API_PREFIX, tags=["devices"])


def _session(session: DeviceSession) -> DeviceSessionOut:
    return DeviceSessionOut(
        device_id=session.device.id,
        address=session.account.address,
        display_name=session.account.display_name,
        access_token=session.access_token,
    )


@router.post("/auth/challenge", response_model=ChallengeOut)
async def issue_challenge(services: Services) -> ChallengeOut:
    """A one-time challenge for the device to sign (see ``signed_challenge_bytes``)."""
    challenge = await services.devices.issue_challenge()
    return ChallengeOut(
        challenge=challenge.value, domain=challenge.domain, expires_at=challenge.expires_at
    )


@router.post("/devices", status_code=status.HTTP_201_CREATED, response_model=DeviceSessionOut)
async def register_device(body: RegisterDeviceIn, services: Services) -> DeviceSessionOut:
    """Register a new device with its own keys; the node creates an anonymous account for it."""
    session = await services.devices.register(
        ed25519_key=body.ed25519_key,
        curve25519_key=body.curve25519_key,
        challenge=body.challenge,
        signature=body.signature,
        display_name=body.display_name,
    )
    return _session(session)


@router.post("/auth/token", response_model=DeviceSessionOut)
async def issue_token(body: DeviceKeys, services: Services) -> DeviceSessionOut:
    """A fresh access token for a registered device that proves possession of its key."""
    session = await services.devices.login(
        ed25519_key=body.ed25519_key, challenge=body.challenge, signature=body.signature
    )
    return _session(session)


@router.get("/me", response_model=MeOut)
async def whoami(caller: CurrentDevice, services: Services) -> MeOut:
    account = await services.accounts.profile(caller)
    return render.me(account, caller.device.id)


@router.patch("/me", response_model=MeOut)
async def set_name(body: SetNameIn, caller: CurrentDevice, services: Services) -> MeOut:
    account = await services.accounts.set_display_name(caller, body.display_name)
    return render.me(account, caller.device.id)
