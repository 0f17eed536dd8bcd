"""The JSON answer bodies of the ``/openmsg/`` endpoints, and how to read a peer's.

Every ``/openmsg/`` endpoint answers HTTP 200 with a JSON body, errors included:
v1 clients ignore the body of any other status.
"""

from __future__ import annotations

from dataclasses import dataclass

from openmessenger.protocol.openmsg._codes import ResponseCode
from openmessenger.protocol.openmsg._errors import LocalProtocolError

ANSWER_HTTP_STATUS = 200

JsonObject = dict[str, object]

_DEFAULT_ERROR_MESSAGES: dict[ResponseCode, str] = {
    ResponseCode.MESSAGE_DATA_MISSING: "Missing or invalid data.",
    ResponseCode.IDENT_CODE_INVALID: "No connection matches this ident_code.",
    ResponseCode.MESSAGE_REJECTED_BYUSER: "The receiver does not accept messages from you.",
    ResponseCode.MESSAGE_UNKNOWN: "No outgoing message matches these details.",
    ResponseCode.MESSAGE_HASH_INVALID: "The message hash does not match.",
    ResponseCode.MESSAGE_EXPIRED: "The message timestamp is outside the accepted window.",
    ResponseCode.MESSAGE_DECRYPTION_ERROR: "The message could not be decrypted.",
    ResponseCode.MESSAGE_NONCE_ERROR: "This nonce was already used on this connection.",
    ResponseCode.MESSAGE_REJECTED_TEMP: "Refused for now; try again later.",
    ResponseCode.MESSAGE_REJECTED_PERM: "Refused permanently.",
}


def success_body() -> JsonObject:
    """The answer of ``auth-confirm/`` and ``message-confirm/`` (no code in v1)."""
    return {"success": True}


def message_accepted_body() -> JsonObject:
    """The answer of ``message-receive/`` once the message is stored."""
    return {"success": True, "response_code": ResponseCode.SUCCESS.value}


def error_body(code: ResponseCode, message: str | None = None) -> JsonObject:
    """An error answer; all four fields always, so every v1 client finds what it reads."""
    if code.is_success:
        raise LocalProtocolError("an error answer needs an SM_E code, not SM_S888")
    return {
        "error": True,
        "response_code": code.value,
        "error_code": code.error_code,
        "error_message": message if message is not None else _DEFAULT_ERROR_MESSAGES[code],
    }


@dataclass(frozen=True, slots=True)
class PeerAnswer:
    """How a v1 client reads a peer's answer: ``ok`` is the outcome, the rest is detail."""

    ok: bool
    response_code: ResponseCode | None
    error_message: str | None


def read_answer(body: object) -> PeerAnswer:
    """Classify a decoded JSON answer the way the reference's clients do.

    The reference tests ``error`` first, then requires ``success`` to be true,
    with PHP's loose truthiness; an unknown or absent ``response_code`` is None.
    """
    if not isinstance(body, dict):
        return PeerAnswer(ok=False, response_code=None, error_message=None)
    raw_code = body.get("response_code")
    code = ResponseCode(raw_code) if raw_code in _CODE_VALUES else None
    raw_message = body.get("error_message")
    message = raw_message if isinstance(raw_message, str) else None
    ok = not _php_truthy(body.get("error")) and _php_truthy(body.get("success"))
    return PeerAnswer(ok=ok, response_code=code, error_message=None if ok else message)


_CODE_VALUES = frozenset(code.value for code in ResponseCode)


def _php_truthy(value: object) -> bool:
    # PHP treats the string "0" as false, unlike Python.
    if isinstance(value, str):
        return value not in ("", "0")
    return bool(value)
