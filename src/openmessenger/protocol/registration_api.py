"""JSON shapes of registering an account (``/v1/account/...``), shared by the
node and the SDK. Same rules as ``client_api``: strict requests, lenient
responses, fields are a public contract."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from openmessenger.protocol.client_api import Request, Response

CodeStr = Annotated[str, Field(pattern=r"^[0-9]{6}$", examples=["042917"])]
OwnerKindStr = Literal["person", "organisation"]


class VerificationIn(Request):
    channel: Literal["email", "sms"]
    to: str = Field(
        min_length=1,
        max_length=320,
        description="An e-mail address, or a phone number in E.164 form (+447700900123)",
        examples=["alice@example.org"],
    )


class VerificationOut(Response):
    verification_id: str
    channel: str = Field(description="email or sms")
    expires_at: datetime


class VerificationConfirmIn(Request):
    code: CodeStr
    owner_kind: OwnerKindStr | None = Field(
        default=None, description="Who owns the account; needed unless it is registered already"
    )
    display_name: str | None = Field(default=None, max_length=200)


class TotpSetupOut(Response):
    secret: str = Field(description="Base32 TOTP secret (SHA-1, 6 digits, 30 s); shown once")
    uri: str = Field(description="otpauth:// URI of the secret, for a QR code")


class TotpConfirmIn(Request):
    code: CodeStr
    owner_kind: OwnerKindStr | None = Field(
        default=None, description="Who owns the account; needed unless it is registered already"
    )


class IdentityOut(Response):
    kind: str = Field(description="email or phone")
    verified_at: datetime


class IdentitiesOut(Response):
    identities: list[IdentityOut] = Field(
        description="Verified e-mail addresses and phone numbers: the node keeps only "
        "their HMACs, so their values cannot be shown"
    )
