"""What our nodes speak beyond Openmsg v1, negotiated and never sent to a v1 peer.

A node describes itself at ``https://{domain}/.well-known/openmessenger``: its
Ed25519 signing key, the protocols it speaks and its capabilities. Extended
requests go to their own endpoints under ``/openmsg/x-openmessenger/`` (a v1
peer never receives a field it does not know) and are signed by the sending
node's key over the method, path, both domains, a timestamp and the body's
SHA-256; the signature proves the origin, so they need no confirm callback.

Capabilities:

- ``long-text``: messages of up to 65,536 characters (v1 stops at 2,000), in
  the same secretbox package and with the same hash, window and single-use
  nonce rules as v1's ``message-receive/``.
- ``end-to-end``: the same request with ``"end_to_end": true`` carries an
  ``om.megolm.v1`` body (protocol/e2e.py) inside the secretbox package, and the
  sender's node may ask for the keys of a connected address on this node
  (``keys-query/``, ``keys-claim/``), so that devices on two nodes encrypt to
  each other. docs/encryption.md describes both.
- ``envelope``: the same request may carry ``envelope``: the message's media type
  and metadata, and for a message sent through an app, the app and the sending
  node's attestation of it (docs/apps.md). The receiving node checks the
  attestation with the sender's node key and refuses a message whose tag does
  not verify.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from openmessenger.protocol.e2e import MAX_ENCRYPTED_BODY_CHARS, SignedDeviceList, SignedKey
from openmessenger.protocol.openmsg._bodies import MessageReceiveRequest, parse_body
from openmessenger.protocol.openmsg._fields import package_chars_for, package_up_to
from openmessenger.protocol.openmsg._package import MIN_PACKAGE_BYTES

DESCRIPTOR_PATH = "/.well-known/openmessenger"
EXTENSION_PROTOCOL = "openmessenger/1"
V1_PROTOCOL = "openmsg/1"

LONG_TEXT = "long-text"
LONG_TEXT_MAX_CHARS = 65_536
LONG_MESSAGE_PATH = "/openmsg/x-openmessenger/message-receive/"
END_TO_END = "end-to-end"
ENVELOPE = "envelope"
KEYS_QUERY_PATH = "/openmsg/x-openmessenger/keys-query/"
KEYS_CLAIM_PATH = "/openmsg/x-openmessenger/keys-claim/"
# An end-to-end body is ASCII (JSON of base64), so one byte per character.
MAX_LONG_PACKAGE_CHARS = max(
    package_chars_for(LONG_TEXT_MAX_CHARS),
    -(-(MIN_PACKAGE_BYTES + MAX_ENCRYPTED_BODY_CHARS) * 4 // 3),
)

ORIGIN_HEADER = "openmessenger-origin"
TIMESTAMP_HEADER = "openmessenger-timestamp"
SIGNATURE_HEADER = "openmessenger-signature"
NONCE_HEADER = "openmessenger-nonce"
NONCE_PATTERN = re.compile(r"[0-9A-Za-z_-]{16,64}")
"""A fresh value per request: the receiver takes each (origin, nonce) once."""

_SIGNING_CONTEXT = "openmessenger/v1/node-request"


class NodeDescriptor(BaseModel):
    """``GET /.well-known/openmessenger``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    domain: str = Field(max_length=253)
    protocols: tuple[str, ...] = Field(max_length=32)
    signing_key: str = Field(min_length=43, max_length=44, description="Ed25519, base64")
    capabilities: tuple[str, ...] = Field(default=(), max_length=64)

    def supports(self, capability: str) -> bool:
        return EXTENSION_PROTOCOL in self.protocols and capability in self.capabilities


class AppTag(BaseModel):
    """Which app a message came through, as the sending node attests it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_id: str = Field(min_length=3, max_length=32, pattern=r"^[a-z][a-z0-9-]{2,31}$")
    app_key: str = Field(min_length=43, max_length=44)
    attestation: str = Field(min_length=86, max_length=88)
    app_signature: str | None = Field(default=None, min_length=86, max_length=88)


class Envelope(BaseModel):
    """The envelope fields beyond v1's (capability ``envelope``). ``message_id``,
    ``sender_device`` and ``sent_at`` are the sending node's, as it attested them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: str = Field(min_length=1, max_length=64)
    sender_device: str = Field(min_length=1, max_length=64)
    sent_at: int = Field(ge=0, le=2**40)
    media_type: str = Field(default="text", min_length=1, max_length=200)
    metadata: dict[str, object] | None = None
    app: AppTag | None = None


class LongMessageReceiveRequest(MessageReceiveRequest):
    """``POST /openmsg/x-openmessenger/message-receive/``: v1's fields, a longer package,
    and ``end_to_end``: the package holds an ``om.megolm.v1`` body, not text."""

    message_package: Annotated[str, package_up_to(MAX_LONG_PACKAGE_CHARS)]
    end_to_end: bool = False
    envelope: Envelope | None = None


class KeysQueryRequest(BaseModel):
    """``POST keys-query/``: the devices of ``address`` (on the receiving node), asked
    for ``requester`` (on the signing node), who must be connected with it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requester: str = Field(min_length=3, max_length=300)
    address: str = Field(min_length=3, max_length=300)


class KeysClaimRequest(KeysQueryRequest):
    """``POST keys-claim/``: one one-time key of each of ``devices``."""

    devices: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=256
    )


class RemoteDevice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    device_id: str = Field(min_length=1, max_length=64)
    ed25519_key: str = Field(min_length=43, max_length=44)
    curve25519_key: str = Field(min_length=43, max_length=44)


class KeysQueryAnswer(BaseModel):
    """``found`` is False, and nothing else is said, for an unknown address and for
    one that is not connected with the requester alike."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    found: bool
    device_list: SignedDeviceList | None = None
    devices: list[RemoteDevice] = Field(default_factory=list, max_length=256)
    transport_only: bool = False
    """The address reads through a device whose keys its node holds (a plain-HTTP
    app, docs/apps.md): write to it transport-encrypted."""


class ClaimedRemoteKey(SignedKey):
    fallback: bool = False


class KeysClaimAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    found: bool
    one_time_keys: dict[str, ClaimedRemoteKey] = Field(default_factory=dict, max_length=256)


def parse_long_message_receive_request(data: object) -> LongMessageReceiveRequest:
    return parse_body(LongMessageReceiveRequest, data)


def descriptor_url(domain: str) -> str:
    return f"https://{domain}{DESCRIPTOR_PATH}"


def long_message_url(domain: str) -> str:
    return f"https://{domain}{LONG_MESSAGE_PATH}"


def extension_url(domain: str, path: str) -> str:
    return f"https://{domain}{path}"


def signed_request_bytes(
    method: str, path: str, target: str, origin: str, timestamp: int, nonce: str, body: bytes
) -> bytes:
    """What a node signs for an extended request to ``target``: sending it to
    another node or path, at another time, with another nonce or body breaks the
    signature (and the receiver takes a nonce once)."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join(
        (_SIGNING_CONTEXT, method.upper(), path, target, origin, str(timestamp), nonce, digest)
    ).encode()
