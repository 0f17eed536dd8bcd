"""The four Openmsg v1 request bodies and the ``auth/`` success answer.

Inbound bodies ignore fields they do not know: the reference already sends
extras (``verified_account``) and later versions may add more. Each model's
``to_wire()`` gives the JSON object to send, so our own outbound bodies pass
the same checks as a peer's.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from openmessenger.core.ids import Address, parse_address
from openmessenger.protocol.openmsg._answers import JsonObject
from openmessenger.protocol.openmsg._base64 import b64url_decode
from openmessenger.protocol.openmsg._errors import MalformedBody
from openmessenger.protocol.openmsg._fields import (
    OPENMSG_MAJOR_VERSION,
    AddressIdStr,
    AddressStr,
    AllowReplies,
    CodeHex,
    HashHex,
    NameStr,
    NonceStr,
    OptionalNameStr,
    PackageStr,
    PassCodeStr,
    SaltHex,
    SuccessFlag,
    Timestamp,
    Version,
)


class _WireBody(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    def to_wire(self) -> JsonObject:
        # None marks an optional field left out (e.g. an unchanged sender name).
        return self.model_dump(mode="json", exclude_none=True)


class AuthRequest(_WireBody):
    """``POST auth/``: the initiator asks the receiver's node for a connection."""

    receiving_openmsg_address_id: AddressIdStr
    pass_code: PassCodeStr
    sending_openmsg_address: AddressStr
    sending_openmsg_address_name: NameStr
    # Absent: the peer did not say it takes replies, so we do not assume it.
    sending_allow_replies: AllowReplies = False
    openmsg_version: Version = OPENMSG_MAJOR_VERSION

    @property
    def sending_address(self) -> Address:
        return parse_address(self.sending_openmsg_address).address


class AuthConfirmRequest(_WireBody):
    """``POST auth-confirm/``: the receiver asks the initiator's domain to vouch."""

    receiving_openmsg_address: AddressStr
    passcode_hash: HashHex

    @property
    def receiving_address(self) -> Address:
        return parse_address(self.receiving_openmsg_address).address


class AuthSuccessAnswer(_WireBody):
    """The answer of ``auth/`` when the connection is made."""

    success: SuccessFlag = True
    auth_code: CodeHex
    ident_code: CodeHex
    message_crypt_key: CodeHex
    receiving_openmsg_address_name: NameStr


class MessageReceiveRequest(_WireBody):
    """``POST message-receive/``: a message for one of the receiver's addresses."""

    receiving_openmsg_address_id: AddressIdStr
    # Sent only when the sender's name changed.
    sending_openmsg_address_name: OptionalNameStr = None
    ident_code: CodeHex
    message_package: PackageStr
    message_hash: HashHex
    message_salt: SaltHex
    message_timestamp: Timestamp
    openmsg_version: Version = OPENMSG_MAJOR_VERSION


class MessageConfirmRequest(_WireBody):
    """``POST message-confirm/``: the receiver asks the sender's domain to vouch."""

    message_hash: HashHex
    message_nonce: NonceStr

    @property
    def nonce(self) -> bytes:
        return b64url_decode(self.message_nonce)


_Body = TypeVar("_Body", bound=_WireBody)


def parse_body(model: type[_Body], data: object) -> _Body:
    if not isinstance(data, dict):
        raise MalformedBody("body", "must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        cause = (first.get("ctx") or {}).get("error")
        raise MalformedBody(field, str(cause) if cause else first["msg"]) from exc


def parse_auth_request(data: object) -> AuthRequest:
    return parse_body(AuthRequest, data)


def parse_auth_confirm_request(data: object) -> AuthConfirmRequest:
    return parse_body(AuthConfirmRequest, data)


def parse_auth_success_answer(data: object) -> AuthSuccessAnswer:
    return parse_body(AuthSuccessAnswer, data)


def parse_message_receive_request(data: object) -> MessageReceiveRequest:
    return parse_body(MessageReceiveRequest, data)


def parse_message_confirm_request(data: object) -> MessageConfirmRequest:
    return parse_body(MessageConfirmRequest, data)
