"""Addresses, domains and display names: what the node accepts, and how it names
the field it refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from openmessenger.core.errors import InvalidInput
from openmessenger.core.ids import (
    MAX_DISPLAY_NAME_LENGTH,
    MAX_DOMAIN_LENGTH,
    address_domain,
    parse_address,
    parse_domain,
    validate_display_name,
)
from tests.support.vectors import VECTORS_PATH, load_vectors


def _address_vectors(kind: str) -> list[Any]:
    """The Openmsg address vectors of one kind, or one placeholder when the file is absent."""
    if not VECTORS_PATH.is_file():
        return [pytest.param(None, id="vectors-file-missing")]
    vectors = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["addresses"][kind]
    return [pytest.param(v, id=repr(v)) for v in vectors]


def _require_vector(vector: str | None) -> str:
    if vector is None:
        load_vectors()  # skips or fails
        raise AssertionError("unreachable: the vectors file appeared during the run")
    return vector


def test_vectors_file_lists_valid_and_invalid_addresses() -> None:
    addresses = load_vectors()["addresses"]
    assert addresses["valid"] and addresses["invalid"]


# --- parse_address ---------------------------------------------------------------


@pytest.mark.parametrize("vector", _address_vectors("valid"))
def test_openmsg_valid_address_vectors_parse_to_themselves(vector: str | None) -> None:
    address = _require_vector(vector)
    parsed = parse_address(address)
    number, domain = address.split("*")
    assert parsed.number == number
    assert parsed.domain == domain
    assert parsed.address == address


@pytest.mark.parametrize("vector", _address_vectors("invalid"))
def test_openmsg_invalid_address_vectors_are_refused_naming_the_field(
    vector: str | None,
) -> None:
    address = _require_vector(vector)
    with pytest.raises(InvalidInput) as excinfo:
        parse_address(address)
    assert excinfo.value.field == "address"
    assert excinfo.value.message.startswith("address: ")
    with pytest.raises(InvalidInput) as excinfo:
        parse_address(address, field="receiver_address")
    assert excinfo.value.field == "receiver_address"


def test_address_keeps_leading_zeros_of_the_number() -> None:
    assert parse_address("0004821937*chat.example.org").number == "0004821937"


def test_address_domain_is_folded_to_canonical_lower_case() -> None:
    parsed = parse_address("4821937*Chat.Example.ORG")
    assert parsed.address == "4821937*chat.example.org"
    assert address_domain(parsed.address) == "chat.example.org"


def test_address_on_localhost_is_valid() -> None:
    assert parse_address("1*localhost").address == "1*localhost"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "*",
        "4821937",
        "4821937*",
        "*chat.example.org",
        "4821937**chat.example.org",
        "4821937@chat.example.org",
        "-4821937*chat.example.org",
        "48 21937*chat.example.org",
        " 4821937*chat.example.org",
        "4821937.5*chat.example.org",
        "\uff10\uff11\uff12*chat.example.org",  # fullwidth digits
        "\u0661\u0662\u0663*chat.example.org",  # Arabic-Indic digits
        "1" * 21 + "*chat.example.org",
        "4821937*chat example.org",
        "4821937*chat..example.org",
        "4821937*-chat.example.org",
        "4821937*chat-.example.org",
        "4821937*bücher.example",
        "4821937*chat.example.org/path",
        "4821937*chat.example.org:443",
    ],
)
def test_malformed_addresses_are_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        parse_address(value)
    assert excinfo.value.field == "address"


@pytest.mark.parametrize("value", [None, 4821937, b"1*x.io"])
def test_non_string_address_is_invalid_input_not_a_crash(value: Any) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        parse_address(value)
    assert excinfo.value.field == "address"


def test_number_of_twenty_digits_is_the_longest_accepted() -> None:
    assert parse_address("9" * 20 + "*x.io").number == "9" * 20


def test_newline_inside_the_number_is_refused() -> None:
    with pytest.raises(InvalidInput):
        parse_address("42\n*x.io")


@pytest.mark.parametrize(
    "value",
    [
        "1000001*alpha.test",
        "1*A.B.C",
        "77*xn--bcher-kva.example",
        "5*a-b.c-d.e",
        "5*1.2.3.4",
    ],
)
def test_accepted_address_is_canonical_and_reparses_to_itself(value: str) -> None:
    address = parse_address(value).address
    assert address == address.strip().lower()
    assert not address.endswith(".")
    assert parse_address(address).address == address


# --- parse_domain ----------------------------------------------------------------


def test_domain_is_lower_cased_and_trailing_dot_dropped() -> None:
    assert parse_domain("Chat.Example.ORG.") == "chat.example.org"


def test_label_of_63_characters_is_accepted_64_is_not() -> None:
    assert parse_domain("a" * 63 + ".io") == "a" * 63 + ".io"
    with pytest.raises(InvalidInput):
        parse_domain("a" * 64 + ".io")


def test_domain_of_253_characters_is_accepted_254_is_not() -> None:
    labels = ["a" * 63, "b" * 63, "c" * 63, "d" * 61]  # 63*3 + 61 + 3 dots = 253
    longest = ".".join(labels)
    assert len(longest) == MAX_DOMAIN_LENGTH
    assert parse_domain(longest) == longest
    with pytest.raises(InvalidInput):
        parse_domain(longest + "d")


@pytest.mark.parametrize(
    "value", ["", " ", ".", "bad_domain.io", "a..b", ".a.b", "-a.io", "a-.io", "a b.io", "ü.io"]
)
def test_bad_domains_are_refused_naming_the_given_field(value: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        parse_domain(value)
    assert excinfo.value.field == "domain"
    with pytest.raises(InvalidInput) as excinfo:
        parse_domain(value, field="node_domain")
    assert excinfo.value.field == "node_domain"


# --- validate_display_name -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Alice", "Alice"),
        ("Agent 007", "Agent 007"),
        ("  Alice   Smith  ", "Alice Smith"),
        ("Alice\tSmith\n", "Alice Smith"),
        ("Zoë Ærø", "Zoë Ærø"),
        ("José Núñez", "José Núñez"),
        ("Влад", "Влад"),
        ("王小明", "王小明"),
    ],
)
def test_display_name_is_accepted_with_whitespace_collapsed(value: str, expected: str) -> None:
    assert validate_display_name(value) == expected


def test_display_name_limit_counts_after_collapsing_whitespace() -> None:
    exactly = "a" * MAX_DISPLAY_NAME_LENGTH
    assert validate_display_name(exactly) == exactly
    padded = "  " + "a" * 20 + "     " + "b" * 19 + "  "  # collapses to 40
    assert validate_display_name(padded) == "a" * 20 + " " + "b" * 19
    with pytest.raises(InvalidInput) as excinfo:
        validate_display_name("a" * (MAX_DISPLAY_NAME_LENGTH + 1))
    assert excinfo.value.field == "display_name"


@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_empty_display_name_is_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        validate_display_name(value)
    assert excinfo.value.field == "display_name"


@pytest.mark.parametrize(
    "value",
    [
        "Alice!",
        "O'Brien",
        "alice@example.org",
        "<script>",
        "Bob 😀",
        "a_b",
        "Agent \u0660\u0660\u0667",  # Arabic-Indic digits are not the ASCII digits the wire allows
        "Alice\x00",
        "Alice\u200bBob",  # zero-width space
    ],
)
def test_display_name_with_other_characters_is_refused(value: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        validate_display_name(value, field="name")
    assert excinfo.value.field == "name"


@pytest.mark.parametrize("name", ["प्रिया", "Zoe\u0308", "Łukasz 2"])
def test_names_with_combining_marks_are_letters(name: str) -> None:
    assert validate_display_name(name) == name


def test_a_name_cannot_start_with_a_combining_mark() -> None:
    with pytest.raises(InvalidInput):
        validate_display_name("\u0308abc")
