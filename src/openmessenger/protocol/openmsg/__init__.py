"""Openmsg v1 on the wire: pure, sans-I/O (no sockets, clock or asyncio).

The reference is the PHP implementation ``Openmsg-io/version_1.0``; docs/openmsg.md
describes the format as implemented here and every ambiguity we resolved.
"""

from openmessenger.protocol.openmsg._answers import (
    ANSWER_HTTP_STATUS,
    JsonObject,
    PeerAnswer,
    error_body,
    message_accepted_body,
    read_answer,
    success_body,
)
from openmessenger.protocol.openmsg._base64 import b64url_decode, b64url_encode
from openmessenger.protocol.openmsg._bodies import (
    AuthConfirmRequest,
    AuthRequest,
    AuthSuccessAnswer,
    MessageConfirmRequest,
    MessageReceiveRequest,
    parse_auth_confirm_request,
    parse_auth_request,
    parse_auth_success_answer,
    parse_message_confirm_request,
    parse_message_receive_request,
)
from openmessenger.protocol.openmsg._codes import ResponseCode
from openmessenger.protocol.openmsg._errors import (
    DecryptionFailed,
    InvalidBase64,
    LocalProtocolError,
    MalformedBody,
    OpenmsgError,
    RemoteProtocolError,
)
from openmessenger.protocol.openmsg._extension import (
    DESCRIPTOR_PATH,
    END_TO_END,
    ENVELOPE,
    EXTENSION_PROTOCOL,
    KEYS_CLAIM_PATH,
    KEYS_QUERY_PATH,
    LONG_MESSAGE_PATH,
    LONG_TEXT,
    LONG_TEXT_MAX_CHARS,
    ORIGIN_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    V1_PROTOCOL,
    AppTag,
    ClaimedRemoteKey,
    Envelope,
    KeysClaimAnswer,
    KeysClaimRequest,
    KeysQueryAnswer,
    KeysQueryRequest,
    LongMessageReceiveRequest,
    NodeDescriptor,
    RemoteDevice,
    descriptor_url,
    extension_url,
    long_message_url,
    parse_long_message_receive_request,
    signed_request_bytes,
)
from openmessenger.protocol.openmsg._fields import (
    MAX_ADDRESS_CHARS,
    MAX_PACKAGE_CHARS,
    OPENMSG_MAJOR_VERSION,
    PASS_CODE_DIGITS,
    SALT_HEX_CHARS,
)
from openmessenger.protocol.openmsg._fresh import (
    new_auth_code,
    new_ident_code,
    new_message_crypt_key,
    new_message_nonce,
    new_message_salt,
)
from openmessenger.protocol.openmsg._hashing import (
    HASH_HEX_CHARS,
    MESSAGE_WINDOW_SECONDS,
    hashes_match,
    message_hash,
    passcode_hash,
    sha256_hex,
    within_window,
)
from openmessenger.protocol.openmsg._package import (
    KEY_BYTES,
    MAX_MESSAGE_TEXT_CHARS,
    NONCE_BYTES,
    open_package,
    package_message,
    parse_crypt_key,
)

ENDPOINTS = ("auth", "auth-confirm", "message-receive", "message-confirm")
"""Served at ``https://{domain}/openmsg/{endpoint}/``, JSON in and out, POST."""


def endpoint_url(domain: str, endpoint: str) -> str:
    """``https://{domain}/openmsg/{endpoint}/`` for one of ENDPOINTS."""
    if endpoint not in ENDPOINTS:
        raise LocalProtocolError(f"unknown Openmsg endpoint {endpoint!r}")
    return f"https://{domain}/openmsg/{endpoint}/"


__all__ = [
    "ANSWER_HTTP_STATUS",
    "DESCRIPTOR_PATH",
    "ENDPOINTS",
    "END_TO_END",
    "ENVELOPE",
    "EXTENSION_PROTOCOL",
    "HASH_HEX_CHARS",
    "KEYS_CLAIM_PATH",
    "KEYS_QUERY_PATH",
    "KEY_BYTES",
    "LONG_MESSAGE_PATH",
    "LONG_TEXT",
    "LONG_TEXT_MAX_CHARS",
    "MAX_ADDRESS_CHARS",
    "MAX_MESSAGE_TEXT_CHARS",
    "MAX_PACKAGE_CHARS",
    "MESSAGE_WINDOW_SECONDS",
    "NONCE_BYTES",
    "OPENMSG_MAJOR_VERSION",
    "ORIGIN_HEADER",
    "PASS_CODE_DIGITS",
    "SALT_HEX_CHARS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "V1_PROTOCOL",
    "AppTag",
    "AuthConfirmRequest",
    "AuthRequest",
    "AuthSuccessAnswer",
    "ClaimedRemoteKey",
    "DecryptionFailed",
    "Envelope",
    "InvalidBase64",
    "JsonObject",
    "KeysClaimAnswer",
    "KeysClaimRequest",
    "KeysQueryAnswer",
    "KeysQueryRequest",
    "LocalProtocolError",
    "LongMessageReceiveRequest",
    "MalformedBody",
    "MessageConfirmRequest",
    "MessageReceiveRequest",
    "NodeDescriptor",
    "OpenmsgError",
    "PeerAnswer",
    "RemoteDevice",
    "RemoteProtocolError",
    "ResponseCode",
    "b64url_decode",
    "b64url_encode",
    "descriptor_url",
    "endpoint_url",
    "error_body",
    "extension_url",
    "hashes_match",
    "long_message_url",
    "message_accepted_body",
    "message_hash",
    "new_auth_code",
    "new_ident_code",
    "new_message_crypt_key",
    "new_message_nonce",
    "new_message_salt",
    "open_package",
    "package_message",
    "parse_auth_confirm_request",
    "parse_auth_request",
    "parse_auth_success_answer",
    "parse_crypt_key",
    "parse_long_message_receive_request",
    "parse_message_confirm_request",
    "parse_message_receive_request",
    "passcode_hash",
    "read_answer",
    "sha256_hex",
    "signed_request_bytes",
    "success_body",
    "within_window",
]
