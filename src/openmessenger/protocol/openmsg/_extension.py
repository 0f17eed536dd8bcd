"""What our nodes speak beyond Openmsg v1, negotiated and never sent to a v1 peer.

A node describes itself at ``https://{domain}/.well-known/openmessenger``: its
Ed25519 signing key, the protocols it speaks and its capabilities. Extended
requests go to their own endpoints under ``/openmsg/x-openmessenger/`` (a v1
peer never receives a field it does not know) and are signed by the sending
node's key over the method, path, both domains, a timestamp and the body's
SHA-256; the signature proves the origin, so they need no confirm callback.

The first capability, ``long-text``: messages of up to 65,536 characters
(v1 stops at 2,000), in the same secretbox package and with the same hash,
window and single-use nonce rules as v1's ``message-receive/``.
"""

from __future__ import annotations

import hashlib
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from openmessenger.protocol.openmsg._bodies import MessageReceiveRequest, parse_body
from openmessenger.protocol.openmsg._fields import package_chars_for, package_up_to

DESCRIPTOR_PATH = "/.well-known/openmessenger"
EXTENSION_PROTOCOL = "openmessenger/1"
V1_PROTOCOL = "openmsg/1"

LONG_TEXT = "long-text"
LONG_TEXT_MAX_CHARS = 65_536
LONG_MESSAGE_PATH = "/openmsg/x-openmessenger/message-receive/"
MAX_LONG_PACKAGE_CHARS = package_chars_for(LONG_TEXT_MAX_CHARS)

ORIGIN_HEADER = "openmessenger-origin"
TIMESTAMP_HEADER = "openmessenger-timestamp"
SIGNATURE_HEADER = "openmessenger-signature"

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


class LongMessageReceiveRequest(MessageReceiveRequest):
    """``POST /openmsg/x-openmessenger/message-receive/``: v1's fields, a longer package."""

    message_package: Annotated[str, package_up_to(MAX_LONG_PACKAGE_CHARS)]


def parse_long_message_receive_request(data: object) -> LongMessageReceiveRequest:
    return parse_body(LongMessageReceiveRequest, data)


def descriptor_url(domain: str) -> str:
    return f"https://{domain}{DESCRIPTOR_PATH}"


def long_message_url(domain: str) -> str:
    return f"https://{domain}{LONG_MESSAGE_PATH}"


def signed_request_bytes(
    method: str, path: str, target: str, origin: str, timestamp: int, body: bytes
) -> bytes:
    """What a node signs for an extended request to ``target``: replaying it to
    another node, path or time, or with another body, breaks the signature."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join(
        (_SIGNING_CONTEXT, method.upper(), path, target, origin, str(timestamp), digest)
    ).encode()
