"""The Openmsg v1 wire layer against known answers computed with PHP + libsodium,
and the limits a peer's body must respect."""

from __future__ import annotations

import json
from typing import Any

import pytest

from openmessenger.protocol.openmsg import (
    ANSWER_HTTP_STATUS,
    MAX_MESSAGE_TEXT_CHARS,
    AuthConfirmRequest,
    AuthRequest,
    AuthSuccessAnswer,
    DecryptionFailed,
    InvalidBase64,
    LocalProtocolError,
    MalformedBody,
    MessageReceiveRequest,
    ResponseCode,
    b64url_decode,
    b64url_encode,
    endpoint_url,
    error_body,
    hashes_match,
    message_accepted_body,
    message_hash,
    new_auth_code,
    new_ident_code,
    new_message_crypt_key,
    new_message_nonce,
    new_message_salt,
    open_package,
    package_message,
    parse_auth_confirm_request,
    parse_auth_request,
    parse_auth_success_answer,
    parse_crypt_key,
    parse_message_confirm_request,
    parse_message_receive_request,
    passcode_hash,
    read_answer,
    success_body,
    within_window,
)
from tests.support.vectors import load_vectors

KEY = bytes(range(32))
NONCE = bytes(range(100, 124))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    return load_vectors()


# --- known answers from PHP + libsodium --------------------------------------------


def test_package_matches_the_libsodium_vector_exactly(vectors: dict[str, Any]) -> None:
    box = vectors["secretbox"]
    package = package_message(
        box["text"], bytes.fromhex(box["key_hex"]), bytes.fromhex(box["nonce_hex"])
    )
    assert package == box["message_package"]


def test_libsodium_package_opens_to_its_text_and_nonce(vectors: dict[str, Any]) -> None:
    box = vectors["secretbox"]
    text, nonce = open_package(box["message_package"], bytes.fromhex(box["key_hex"]))
    assert text == box["text"]
    assert nonce == bytes.fromhex(box["nonce_hex"])


def test_message_hash_matches_the_php_vector(vectors: dict[str, Any]) -> None:
    v = vectors["message_hash"]
    computed = message_hash(
        v["message_package"], v["auth_code"], v["message_salt"], v["message_timestamp"]
    )
    assert computed == v["message_hash"]
    assert hashes_match(computed, v["message_hash"])


def test_passcode_hash_matches_the_php_vector(vectors: dict[str, Any]) -> None:
    v = vectors["passcode_hash"]
    computed = passcode_hash(v["pass_code"], v["initiator_address"], v["receiver_address"])
    assert computed == v["passcode_hash"]


def test_passcode_hash_depends_on_who_initiated(vectors: dict[str, Any]) -> None:
    v = vectors["passcode_hash"]
    swapped = passcode_hash(v["pass_code"], v["receiver_address"], v["initiator_address"])
    assert swapped != v["passcode_hash"]


def test_strict_base64_accepts_what_libsodium_accepts(vectors: dict[str, Any]) -> None:
    accepted = vectors["base64url_nopad_strict"]["accept"]
    assert accepted
    for text in accepted:
        assert b64url_encode(b64url_decode(text)) == text


def test_strict_base64_rejects_what_libsodium_rejects(vectors: dict[str, Any]) -> None:
    rejected = vectors["base64url_nopad_strict"]["reject"]
    assert rejected
    for text in rejected:
        with pytest.raises(InvalidBase64):
            b64url_decode(text)


def test_address_vectors_hold_on_the_wire(vectors: dict[str, Any]) -> None:
    for address in vectors["addresses"]["valid"]:
        body = parse_auth_confirm_request({"receiving_openmsg_address": address, **_HASH})
        assert body.receiving_openmsg_address == address
    for address in vectors["addresses"]["invalid"]:
        with pytest.raises(MalformedBody) as caught:
            parse_auth_confirm_request({"receiving_openmsg_address": address, **_HASH})
        assert caught.value.field == "receiving_openmsg_address"


# --- strict base64url --------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["AAA=", "AA\n", " AA", "AA.A", "AAé", "AB==", "AAB", "_x", "AAAA=", "A" * 5],
)
def test_strict_base64_rejects_lenient_spellings(text: str) -> None:
    with pytest.raises(InvalidBase64):
        b64url_decode(text)


@pytest.mark.parametrize("size", range(0, 40))
def test_strict_base64_round_trips_every_tail_length(size: int) -> None:
    data = bytes((i * 37 + 11) % 256 for i in range(size))
    encoded = b64url_encode(data)
    assert "=" not in encoded and "+" not in encoded and "/" not in encoded
    assert b64url_decode(encoded) == data


def test_strict_base64_uses_the_url_safe_alphabet() -> None:
    assert b64url_encode(b"\xfb\xff") == "-_8"
    assert b64url_decode("-_8") == b"\xfb\xff"


def test_invalid_base64_answers_with_the_unknown_data_code() -> None:
    with pytest.raises(InvalidBase64) as caught:
        b64url_decode("A")
    assert caught.value.response_code is ResponseCode.MESSAGE_DATA_MISSING


# --- packages ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "hi", "ünïcödé 😀", "x" * MAX_MESSAGE_TEXT_CHARS])
def test_package_round_trips(text: str) -> None:
    assert open_package(package_message(text, KEY, NONCE), KEY) == (text, NONCE)


def test_package_starts_with_its_nonce() -> None:
    package = package_message("hello", KEY, NONCE)
    assert b64url_decode(package)[:24] == NONCE


def test_wrong_key_raises_decryption_failed_with_e006() -> None:
    package = package_message("hello", KEY, NONCE)
    with pytest.raises(DecryptionFailed) as caught:
        open_package(package, OTHER_KEY)
    assert caught.value.response_code is ResponseCode.MESSAGE_DECRYPTION_ERROR


@pytest.mark.parametrize("position", [0, 23, 24, 39, -1])
def test_any_altered_byte_raises_decryption_failed(position: int) -> None:
    raw = bytearray(b64url_decode(package_message("hello there", KEY, NONCE)))
    raw[position] ^= 0x01
    with pytest.raises(DecryptionFailed):
        open_package(b64url_encode(bytes(raw)), KEY)


def test_truncated_package_raises_decryption_failed() -> None:
    raw = b64url_decode(package_message("hello", KEY, NONCE))
    with pytest.raises(DecryptionFailed):
        open_package(b64url_encode(raw[:39]), KEY)


def test_package_that_is_not_base64_raises_invalid_base64() -> None:
    package = package_message("hello", KEY, NONCE)
    with pytest.raises(InvalidBase64):
        open_package(package + "=", KEY)


def test_decrypted_bytes_that_are_not_utf8_raise_decryption_failed() -> None:
    from nacl.secret import SecretBox

    sealed = bytes(SecretBox(KEY).encrypt(b"\xff\xfe", NONCE))
    with pytest.raises(DecryptionFailed):
        open_package(b64url_encode(sealed), KEY)


def test_received_text_over_the_limit_is_malformed() -> None:
    from nacl.secret import SecretBox

    long_text = ("x" * (MAX_MESSAGE_TEXT_CHARS + 1)).encode()
    sealed = bytes(SecretBox(KEY).encrypt(long_text, NONCE))
    with pytest.raises(MalformedBody) as caught:
        open_package(b64url_encode(sealed), KEY)
    assert caught.value.field == "message_package"


@pytest.mark.parametrize(
    ("key", "nonce"), [(KEY[:31], NONCE), (KEY + b"\0", NONCE), (KEY, NONCE[:23])]
)
def test_packaging_with_a_wrong_sized_key_or_nonce_is_our_bug(key: bytes, nonce: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        package_message("hello", key, nonce)


def test_packaging_text_over_the_limit_is_our_bug() -> None:
    with pytest.raises(LocalProtocolError):
        package_message("x" * (MAX_MESSAGE_TEXT_CHARS + 1), KEY, NONCE)


def test_crypt_key_hex_parses_to_32_bytes() -> None:
    assert parse_crypt_key(KEY.hex()) == KEY
    for bad in [KEY.hex().upper(), KEY.hex()[:-2], KEY.hex() + "00", "g" * 64]:
        with pytest.raises(MalformedBody):
            parse_crypt_key(bad)


# --- fresh values ------------------------------------------------------------------


def test_fresh_values_have_the_wire_shapes() -> None:
    salt, auth, ident, key = (
        new_message_salt(),
        new_auth_code(),
        new_ident_code(),
        (new_message_crypt_key()),
    )
    assert len(salt) == 32 and int(salt, 16) >= 0 and salt == salt.lower()
    assert len(auth) == 64 and len(ident) == 64 and len(key) == 64
    assert len(parse_crypt_key(key)) == 32
    assert len(new_message_nonce()) == 24
    assert new_auth_code() != auth and new_message_nonce() != new_message_nonce()


def test_fresh_values_pass_the_body_checks() -> None:
    answer = AuthSuccessAnswer(
        auth_code=new_auth_code(),
        ident_code=new_ident_code(),
        message_crypt_key=new_message_crypt_key(),
        receiving_openmsg_address_name="Beta Support",
    )
    assert parse_auth_success_answer(answer.to_wire()) == answer


# --- the 60-second window ----------------------------------------------------------

NOW = 1_700_000_000


@pytest.mark.parametrize(
    ("timestamp", "inside"),
    [
        (NOW, True),
        (NOW - 60, True),
        (NOW - 61, False),
        (NOW + 60, True),
        (NOW + 61, False),
        (0, False),
    ],
)
def test_window_edges(timestamp: int, inside: bool) -> None:
    assert within_window(timestamp, NOW) is inside


def test_window_width_is_a_parameter() -> None:
    assert within_window(NOW - 5, NOW, window=5)
    assert not within_window(NOW - 6, NOW, window=5)
    assert within_window(NOW, NOW, window=0)
    with pytest.raises(ValueError):
        within_window(NOW, NOW, window=-1)


# --- codes and answers -------------------------------------------------------------


def test_response_codes_and_their_names() -> None:
    expected = {
        "SM_S888": None,
        "SM_E000": "message_data_missing",
        "SM_E001": "ident_code_invalid",
        "SM_E002": "message_rejected_byuser",
        "SM_E003": "message_unknown",
        "SM_E004": "message_hash_invalid",
        "SM_E005": "message_expired",
        "SM_E006": "message_decryption_error",
        "SM_E007": "message_nonce_error",
        "SM_E008": "message_rejected_temp",
        "SM_E009": "message_rejected_perm",
    }
    assert {code.value for code in ResponseCode} == set(expected)
    for value, error_code in expected.items():
        code = ResponseCode(value)
        assert code.is_success is (error_code is None)
        if error_code is not None:
            assert code.error_code == error_code


def test_error_body_has_the_four_v1_fields() -> None:
    body = error_body(ResponseCode.MESSAGE_EXPIRED)
    assert body["error"] is True
    assert body["response_code"] == "SM_E005"
    assert body["error_code"] == "message_expired"
    assert isinstance(body["error_message"], str) and body["error_message"]
    assert set(body) == {"error", "response_code", "error_code", "error_message"}
    assert json.loads(json.dumps(body)) == body


def test_error_body_keeps_a_given_message() -> None:
    assert error_body(ResponseCode.MESSAGE_REJECTED_TEMP, "busy")["error_message"] == "busy"


def test_error_body_refuses_the_success_code() -> None:
    with pytest.raises(LocalProtocolError):
        error_body(ResponseCode.SUCCESS)


def test_success_bodies() -> None:
    assert success_body() == {"success": True}
    assert message_accepted_body() == {"success": True, "response_code": "SM_S888"}
    assert ANSWER_HTTP_STATUS == 200


@pytest.mark.parametrize(
    ("body", "ok", "code"),
    [
        ({"success": True}, True, None),
        ({"success": True, "response_code": "SM_S888"}, True, ResponseCode.SUCCESS),
        ({"success": 1}, True, None),
        ({"success": "0"}, False, None),
        ({"success": False}, False, None),
        ({}, False, None),
        ({"success": True, "error": True}, False, None),
        ({"error": True, "response_code": "SM_E004"}, False, ResponseCode.MESSAGE_HASH_INVALID),
        ({"error": True, "response_code": None}, False, None),
        ({"error": True, "response_code": "SM_X123"}, False, None),
        (["success"], False, None),
        (None, False, None),
    ],
)
def test_reading_a_peer_answer_like_the_reference_client(
    body: object, ok: bool, code: ResponseCode | None
) -> None:
    answer = read_answer(body)
    assert answer.ok is ok
    assert answer.response_code is code


def test_reading_an_error_answer_keeps_its_message() -> None:
    answer = read_answer(error_body(ResponseCode.MESSAGE_UNKNOWN, "no such message"))
    assert answer.error_message == "no such message"


def test_endpoint_urls() -> None:
    assert (
        endpoint_url("beta.test", "message-confirm") == "https://beta.test/openmsg/message-confirm/"
    )
    with pytest.raises(LocalProtocolError):
        endpoint_url("beta.test", "setup")


# --- auth/ -------------------------------------------------------------------------

_AUTH: dict[str, object] = {
    "receiving_openmsg_address_id": "0001000002",
    "pass_code": "012345",
    "sending_openmsg_address": "1000001*alpha.test",
    "sending_openmsg_address_name": "Alpha Support",
    "sending_allow_replies": True,
    "openmsg_version": 1,
}


def _auth_error(**changes: object) -> MalformedBody:
    with pytest.raises(MalformedBody) as caught:
        parse_auth_request({**_AUTH, **changes})
    assert caught.value.response_code is ResponseCode.MESSAGE_DATA_MISSING
    return caught.value


def test_reference_auth_body_parses_and_round_trips() -> None:
    body = parse_auth_request(_AUTH)
    assert body.receiving_openmsg_address_id == "0001000002"  # leading zeros kept
    assert body.sending_allow_replies is True
    assert body.openmsg_version == 1
    assert body.to_wire() == _AUTH
    assert parse_auth_request(body.to_wire()) == body


@pytest.mark.parametrize("field", list(_AUTH)[:4])
def test_auth_fields_are_required(field: str) -> None:
    data = {k: v for k, v in _AUTH.items() if k != field}
    with pytest.raises(MalformedBody) as caught:
        parse_auth_request(data)
    assert caught.value.field == field


def test_auth_without_version_or_reply_flag_is_v1_without_replies() -> None:
    data = {k: v for k, v in _AUTH.items() if k not in ("openmsg_version", "sending_allow_replies")}
    body = parse_auth_request(data)
    assert body.openmsg_version == 1 and body.sending_allow_replies is False


@pytest.mark.parametrize("version", [1, 1.0, 1.5, "1", "1.0", "1.2", "01"])
def test_any_major_version_1_is_accepted(version: object) -> None:
    assert parse_auth_request({**_AUTH, "openmsg_version": version}).openmsg_version == 1


@pytest.mark.parametrize(
    "version", [0, 2, 2.0, 0.9, -1, "2", "2.0", "v1", "1.", "", " 1", True, None, [1], float("nan")]
)
def test_other_versions_are_refused(version: object) -> None:
    assert _auth_error(openmsg_version=version).field == "openmsg_version"


@pytest.mark.parametrize("pass_code", ["12345", "1234567", "12345a", 123456, "١٢٣٤٥٦", ""])
def test_pass_code_is_a_string_of_six_ascii_digits(pass_code: object) -> None:
    assert _auth_error(pass_code=pass_code).field == "pass_code"


@pytest.mark.parametrize("address_id", ["", "12a", 1000002, "1" * 21, "-1", "1 "])
def test_receiving_address_id_is_a_digit_string(address_id: object) -> None:
    assert _auth_error(receiving_openmsg_address_id=address_id).field == (
        "receiving_openmsg_address_id"
    )


def test_names_are_limited_to_40_characters() -> None:
    assert parse_auth_request({**_AUTH, "sending_openmsg_address_name": "a" * 40})
    assert _auth_error(sending_openmsg_address_name="a" * 41).field == (
        "sending_openmsg_address_name"
    )


@pytest.mark.parametrize("name", ["", "   ", "Alpha <script>", "Alpha;drop", 42])
def test_names_are_letters_digits_and_spaces(name: object) -> None:
    assert _auth_error(sending_openmsg_address_name=name).field == "sending_openmsg_address_name"


def test_addresses_are_limited_to_255_characters() -> None:
    long_domain = ".".join(["a" * 60] * 4)  # 243 characters, a valid DNS name
    assert parse_auth_request({**_AUTH, "sending_openmsg_address": f"{'1' * 11}*{long_domain}"})
    assert _auth_error(sending_openmsg_address=f"{'1' * 12}*{long_domain}").field == (
        "sending_openmsg_address"
    )


def test_sending_address_keeps_its_spelling_for_the_passcode_hash() -> None:
    body = parse_auth_request({**_AUTH, "sending_openmsg_address": "1000001*Alpha.Test"})
    assert body.sending_openmsg_address == "1000001*Alpha.Test"
    assert body.sending_address == "1000001*alpha.test"


@pytest.mark.parametrize("address", ["1000001*alpha.test.", " 1000001*alpha.test", "1*a.test "])
def test_sending_address_must_be_written_plainly(address: str) -> None:
    assert _auth_error(sending_openmsg_address=address).field == "sending_openmsg_address"


@pytest.mark.parametrize(
    ("raw", "allowed"), [(True, True), (False, False), (1, True), ("0", False)]
)
def test_reply_flag_accepts_booleans_and_0_or_1(raw: object, allowed: bool) -> None:
    assert (
        parse_auth_request({**_AUTH, "sending_allow_replies": raw}).sending_allow_replies is allowed
    )


@pytest.mark.parametrize("raw", ["yes", 2, None, "true"])
def test_reply_flag_refuses_anything_else(raw: object) -> None:
    assert _auth_error(sending_allow_replies=raw).field == "sending_allow_replies"


@pytest.mark.parametrize("body", [None, [], "auth", 1])
def test_a_body_that_is_not_an_object_is_malformed(body: object) -> None:
    with pytest.raises(MalformedBody) as caught:
        parse_auth_request(body)
    assert caught.value.field == "body"


def test_unknown_fields_are_ignored() -> None:
    assert parse_auth_request({**_AUTH, "future_field": {"x": 1}}) == parse_auth_request(_AUTH)


def test_an_outbound_body_passes_the_same_checks() -> None:
    with pytest.raises(ValueError):
        AuthRequest(
            receiving_openmsg_address_id="1",
            pass_code="12345",
            sending_openmsg_address="1*alpha.test",
            sending_openmsg_address_name="Alpha",
        )


# --- auth/ answer and auth-confirm/ ------------------------------------------------

_HASH = {"passcode_hash": "ab" * 32}

_ANSWER: dict[str, object] = {
    "success": True,
    "auth_code": "1" * 64,
    "ident_code": "2" * 64,
    "message_crypt_key": KEY.hex(),
    "receiving_openmsg_address_name": "Beta Support",
}


def test_auth_success_answer_parses_and_round_trips() -> None:
    answer = parse_auth_success_answer(_ANSWER)
    assert parse_crypt_key(answer.message_crypt_key) == KEY
    assert answer.to_wire() == _ANSWER


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("success", False),
        ("success", 1),
        ("auth_code", "1" * 63),
        ("ident_code", "A" * 64),
        ("message_crypt_key", KEY.hex()[:62]),
        ("receiving_openmsg_address_name", "b" * 41),
        ("receiving_openmsg_address_name", ""),
    ],
)
def test_auth_success_answer_limits(field: str, value: object) -> None:
    with pytest.raises(MalformedBody) as caught:
        parse_auth_success_answer({**_ANSWER, field: value})
    assert caught.value.field == field


def test_auth_confirm_body_round_trips() -> None:
    body = AuthConfirmRequest(receiving_openmsg_address="1000002*beta.test", **_HASH)
    assert parse_auth_confirm_request(body.to_wire()) == body
    assert body.receiving_address == "1000002*beta.test"


@pytest.mark.parametrize("bad_hash", ["ab" * 31, "AB" * 32, "zz" * 32, 12])
def test_auth_confirm_hash_is_64_lower_hex(bad_hash: object) -> None:
    with pytest.raises(MalformedBody) as caught:
        parse_auth_confirm_request(
            {"receiving_openmsg_address": "1000002*beta.test", "passcode_hash": bad_hash}
        )
    assert caught.value.field == "passcode_hash"


# --- message-receive/ and message-confirm/ -----------------------------------------


def _message_body(**changes: object) -> dict[str, object]:
    package = package_message("hello", KEY, NONCE)
    body: dict[str, object] = {
        "receiving_openmsg_address_id": "1000002",
        "sending_openmsg_address_name": "Alpha Support",
        "ident_code": "2" * 64,
        "message_package": package,
        "message_hash": message_hash(package, "1" * 64, "0" * 32, NOW),
        "message_salt": "0" * 32,
        "message_timestamp": NOW,
        "openmsg_version": 1,
    }
    return {**body, **changes}


def _message_error(**changes: object) -> str:
    with pytest.raises(MalformedBody) as caught:
        parse_message_receive_request(_message_body(**changes))
    return caught.value.field


def test_message_body_parses_and_its_hash_verifies() -> None:
    body = parse_message_receive_request(_message_body())
    expected = message_hash(
        body.message_package, "1" * 64, body.message_salt, body.message_timestamp
    )
    assert hashes_match(expected, body.message_hash)
    assert not hashes_match(
        message_hash(body.message_package, "3" * 64, body.message_salt, body.message_timestamp),
        body.message_hash,
    )
    assert not hashes_match(expected, "é" * 64)  # a non-hex peer value is just unequal
    assert open_package(body.message_package, KEY) == ("hello", NONCE)
    assert parse_message_receive_request(body.to_wire()) == body


def test_reference_message_body_with_null_name_and_extras_parses() -> None:
    verified = {"verified_account_signature": None, "verified_account_name": None}
    body = parse_message_receive_request(
        _message_body(sending_openmsg_address_name=None, verified_account=verified)
    )
    assert body.sending_openmsg_address_name is None
    assert "sending_openmsg_address_name" not in body.to_wire()


def test_timestamp_may_arrive_as_its_decimal_string() -> None:
    body = parse_message_receive_request(_message_body(message_timestamp=str(NOW)))
    assert body.message_timestamp == NOW


@pytest.mark.parametrize("timestamp", [float(NOW), f"0{NOW}", "-1", -1, True, None, "now", 2**63])
def test_timestamp_must_be_whole_unix_seconds(timestamp: object) -> None:
    assert _message_error(message_timestamp=timestamp) == "message_timestamp"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ident_code", "2" * 63),
        ("message_hash", "F" * 64),
        ("message_salt", "0" * 31),
        ("message_salt", "0" * 64),
        ("message_package", "AAAA"),  # shorter than nonce + MAC
        ("message_package", package_message("hello", KEY, NONCE) + "="),
        ("message_package", "A" * 10_724),
        ("sending_openmsg_address_name", "n" * 41),
        ("openmsg_version", "2.0"),
    ],
)
def test_message_field_limits(field: str, value: object) -> None:
    assert _message_error(**{field: value}) == field


@pytest.mark.parametrize(
    "field",
    [
        "receiving_openmsg_address_id",
        "ident_code",
        "message_package",
        "message_hash",
        "message_salt",
        "message_timestamp",
    ],
)
def test_message_fields_are_required(field: str) -> None:
    data = _message_body()
    del data[field]
    with pytest.raises(MalformedBody) as caught:
        parse_message_receive_request(data)
    assert caught.value.field == field


def test_largest_allowed_text_fits_the_package_limit() -> None:
    package = package_message("😀" * MAX_MESSAGE_TEXT_CHARS, KEY, NONCE)
    body = parse_message_receive_request(_message_body(message_package=package))
    assert isinstance(body, MessageReceiveRequest)


def test_message_confirm_carries_the_nonce() -> None:
    body = parse_message_confirm_request(
        {"message_hash": "c" * 64, "message_nonce": b64url_encode(NONCE)}
    )
    assert body.nonce == NONCE
    assert len(body.message_nonce) == 32


@pytest.mark.parametrize(
    "nonce",
    [b64url_encode(NONCE[:23]), b64url_encode(NONCE + b"\0"), b64url_encode(NONCE) + "=", "", None],
)
def test_message_confirm_nonce_is_24_bytes_of_strict_base64(nonce: object) -> None:
    with pytest.raises(MalformedBody) as caught:
        parse_message_confirm_request({"message_hash": "c" * 64, "message_nonce": nonce})
    assert caught.value.field == "message_nonce"
