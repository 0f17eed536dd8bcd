"""Makes the saved device crypto state that tests/unit/test_crypto_state.py loads.

    python -m tests.support.golden_crypto tests/data/crypto_state_v2

Run it only for a new schema version, into a new directory, and keep the older
ones: the point of the files is that what an older openmessenger wrote still opens.
(crypto_state_v1 was written by this script before ``pins.keys`` existed.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from openmessenger.client.crypto_store import SCHEMA_VERSION, CryptoStore, InboundRecord, Pin
from openmessenger.crypto.device_identity import DeviceIdentity
from openmessenger.crypto.megolm import InboundGroupSession, OutboundGroupSession

PICKLE_KEY = b"golden-crypto-state-key-32-bytes"
ALICE, BOB = "4821937012*localhost", "1234567890*localhost"


def make(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pickle.key").write_bytes(PICKLE_KEY)
    store = CryptoStore(directory, PICKLE_KEY)
    sender, receiver = DeviceIdentity.create(), DeviceIdentity.create()
    receiver.generate_one_time_keys(1)
    one_time_key = next(iter(receiver.unpublished_one_time_keys().values()))
    outbound_olm = sender.create_outbound_session(receiver.curve25519_key, one_time_key)
    first = outbound_olm.encrypt(b"first olm message")
    inbound_olm, _ = receiver.create_inbound_session(sender.curve25519_key, first)
    later = outbound_olm.encrypt(b"an olm message sent after the state was saved")
    group = OutboundGroupSession.create()
    inbound_group = InboundGroupSession.from_session_key(group.session_key)
    megolm = group.encrypt(b"a megolm message sent after the state was saved")
    with store.transaction():
        store.save_olm_session(sender.curve25519_key, inbound_olm, 1)
        store.save_inbound(InboundRecord("A" * 43, inbound_group, ALICE, BOB))
        store.save_pin(ALICE, Pin("B" * 43, 3, frozenset({"dev-1", "dev-2"})), '{"saved": 1}')
        store.set_secret("sealing_key", "a sealed secret")
        store.set_setting("to_device_since", "42")
    store.close()
    expected = {
        "schema_version": SCHEMA_VERSION,
        "olm_peer_key": sender.curve25519_key,
        "olm_message": later.model_dump(),
        "olm_plaintext": "an olm message sent after the state was saved",
        "megolm_sender_key": "A" * 43,
        "megolm_session_id": group.session_id,
        "megolm_ciphertext": megolm,
        "megolm_plaintext": "a megolm message sent after the state was saved",
    }
    (directory / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    for leftover in ("crypto.db-wal", "crypto.db-shm"):
        (directory / leftover).unlink(missing_ok=True)


if __name__ == "__main__":
    make(Path(sys.argv[1]))
