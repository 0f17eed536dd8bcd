"""Pure rules of federation: retry backoff, sealed connection codes, node
signatures over extended requests, what a descriptor promises."""

from __future__ import annotations

import random
import secrets

import pytest

from openmessenger.crypto.keys import NodeSecrets, verify_ed25519
from openmessenger.protocol import openmsg
from openmessenger.services.links import LinkCodes
from openmessenger.services.outbox import MAX_BACKOFF_SECONDS, backoff_seconds


def node_secrets() -> NodeSecrets:
    return NodeSecrets(secrets.token_bytes(32))


def test_backoff_doubles_from_a_second_to_five_minutes_with_jitter() -> None:
    rng = random.Random(7)
    for attempts, base in [(1, 1), (2, 2), (3, 4), (6, 32), (9, 256), (10, 300), (40, 300)]:
        delays = [backoff_seconds(attempts, rng) for _ in range(200)]
        assert base * 0.8 <= min(delays) and max(delays) <= base * 1.2
        assert max(delays) - min(delays) > 0  # spread out, not in lockstep
    assert backoff_seconds(10_000, rng) <= MAX_BACKOFF_SECONDS * 1.2


def test_connection_codes_are_sealed_and_tampering_is_detected() -> None:
    keys = node_secrets()
    codes = LinkCodes(
        openmsg.new_auth_code(), openmsg.new_ident_code(), openmsg.new_message_crypt_key()
    )
    sealed = codes.seal(keys)
    for part in (codes.auth_code, codes.ident_code, codes.crypt_key):
        assert part not in sealed
    assert LinkCodes.unseal(keys, sealed) == codes
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(ValueError):
        LinkCodes.unseal(keys, tampered)
    with pytest.raises(ValueError):
        LinkCodes.unseal(node_secrets(), sealed)  # another node's secret


def test_a_node_signature_covers_every_part_of_an_extended_request() -> None:
    keys = node_secrets()
    parts = (
        "POST",
        openmsg.LONG_MESSAGE_PATH,
        "alpha.test",
        "beta.test",
        1_700_000_000,
        "a-fresh-request-nonce",
        b"{}",
    )
    signature = keys.sign(openmsg.signed_request_bytes(*parts))
    assert verify_ed25519(keys.signing_key(), openmsg.signed_request_bytes(*parts), signature)
    for index, other in enumerate(
        (
            "GET",
            "/openmsg/other/",
            "gamma.test",
            "delta.test",
            1_700_000_001,
            "another-request-nonce",
            b'{"a":1}',
        )
    ):
        changed = list(parts)
        changed[index] = other
        assert not verify_ed25519(
            keys.signing_key(), openmsg.signed_request_bytes(*changed), signature
        )
    assert not verify_ed25519(
        node_secrets().signing_key(), openmsg.signed_request_bytes(*parts), signature
    )


def test_the_signing_key_follows_the_node_secret() -> None:
    secret = secrets.token_bytes(32)
    assert NodeSecrets(secret).signing_key() == NodeSecrets(secret).signing_key()
    assert NodeSecrets(secret).signing_key() != node_secrets().signing_key()


def test_only_a_node_that_speaks_the_extension_is_sent_long_texts() -> None:
    key = node_secrets().signing_key()
    ours = openmsg.NodeDescriptor(
        domain="beta.test",
        protocols=("openmsg/1", "openmessenger/1"),
        signing_key=key,
        capabilities=("long-text",),
    )
    assert ours.supports(openmsg.LONG_TEXT)
    without = ours.model_copy(update={"capabilities": ()})
    v1_only = ours.model_copy(update={"protocols": ("openmsg/1",)})
    assert not without.supports(openmsg.LONG_TEXT)
    assert not v1_only.supports(openmsg.LONG_TEXT)


def test_a_long_text_fits_the_extension_package_but_not_v1s() -> None:
    key = bytes.fromhex(openmsg.new_message_crypt_key())
    text = "é" * openmsg.LONG_TEXT_MAX_CHARS
    with pytest.raises(openmsg.LocalProtocolError):
        openmsg.package_message(text, key, openmsg.new_message_nonce())
    package = openmsg.package_message(
        text, key, openmsg.new_message_nonce(), max_chars=openmsg.LONG_TEXT_MAX_CHARS
    )
    fields = {
        "receiving_openmsg_address_id": "1",
        "ident_code": "a" * 64,
        "message_package": package,
        "message_hash": "b" * 64,
        "message_salt": "c" * 32,
        "message_timestamp": 1,
    }
    assert openmsg.parse_long_message_receive_request(fields).message_package == package
    with pytest.raises(openmsg.MalformedBody):
        openmsg.parse_message_receive_request(fields)
    with pytest.raises(openmsg.MalformedBody):
        openmsg.open_package(package, key)  # v1's limit
    assert openmsg.open_package(package, key, max_chars=openmsg.LONG_TEXT_MAX_CHARS)[0] == text
