"""Media types and metadata: what the node accepts, and the field and reason an app
developer sees when it refuses (the API turns InvalidInput into a 422 naming both)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from openmessenger.core.errors import InvalidInput
from openmessenger.protocol.media_types import (
    APP_ID_PATTERN,
    MAX_METADATA_BYTES,
    MAX_SCHEMA_BYTES,
    MEDIA_NAME_PATTERN,
    PREDEFINED_MEDIA_TYPES,
    MediaType,
    parse_media_type,
    validate_custom_schema,
    validate_metadata,
)

ORDER = parse_media_type("app.shop-42.order")
ORDER_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "total_cents": {"type": "integer", "minimum": 0},
        "lines": {"type": "array", "items": {"$ref": "#/$defs/line"}},
    },
    "required": ["total_cents"],
    "additionalProperties": False,
    "$defs": {
        "line": {
            "type": "object",
            "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
            "required": ["sku"],
        }
    },
}


def refused(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    """The (field, reason) an InvalidInput names; fails if the call is accepted."""
    with pytest.raises(InvalidInput) as caught:
        call(*args, **kwargs)
    return caught.value.field, caught.value.reason


def metadata_refused(media_type: str, metadata: Any) -> tuple[str, str]:
    return refused(validate_metadata, parse_media_type(media_type), metadata)


# --- media type names -------------------------------------------------------------


def test_predefined_types_are_the_documented_eight() -> None:
    documented = {"text", "image", "gif", "reaction", "file", "audio", "video", "location"}
    assert documented == PREDEFINED_MEDIA_TYPES


@pytest.mark.parametrize("name", sorted(PREDEFINED_MEDIA_TYPES))
def test_predefined_type_parses_as_not_custom(name: str) -> None:
    parsed = parse_media_type(name)
    assert parsed == MediaType(name, None, None)
    assert not parsed.custom


def test_custom_type_parses_into_app_id_and_name() -> None:
    parsed = parse_media_type("app.shop-42.order_v2")
    assert (parsed.name, parsed.app_id, parsed.local_name) == (
        "app.shop-42.order_v2",
        "shop-42",
        "order_v2",
    )
    assert parsed.custom


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("app.X", f"must have an app id matching {APP_ID_PATTERN}"),
        ("app.Shop.order", f"must have an app id matching {APP_ID_PATTERN}"),
        ("app.ab.order", f"must have an app id matching {APP_ID_PATTERN}"),  # too short
        ("app." + "a" * 33 + ".order", f"must have an app id matching {APP_ID_PATTERN}"),
        ("app.shop", "must be app.<app-id>.<name>"),
        ("app.shop.", f"must have a name matching {MEDIA_NAME_PATTERN}"),
        ("app.shop.Order", f"must have a name matching {MEDIA_NAME_PATTERN}"),
        ("app.shop.order.v2", f"must have a name matching {MEDIA_NAME_PATTERN}"),
        ("app.shop.order\n", f"must have a name matching {MEDIA_NAME_PATTERN}"),
        ("app.shop." + "a" * 65, f"must have a name matching {MEDIA_NAME_PATTERN}"),
    ],
)
def test_bad_custom_type_names_say_which_part_is_wrong(value: str, reason: str) -> None:
    assert refused(parse_media_type, value) == ("media_type", reason)


@pytest.mark.parametrize("value", ["Image", "IMAGE", "", "call.offer", "image ", "apps.x.y"])
def test_unknown_type_lists_what_is_accepted(value: str) -> None:
    field, reason = refused(parse_media_type, value)
    assert field == "media_type"
    assert reason == (
        "must be one of text, image, gif, reaction, file, audio, video, location"
        " or app.<app-id>.<name>"
    )


def test_type_field_prefix_and_non_string() -> None:
    assert refused(parse_media_type, 5, field="envelope.media_type") == (
        "envelope.media_type",
        "must be a string",
    )


# --- predefined metadata ----------------------------------------------------------

GOOD: list[tuple[str, dict[str, Any]]] = [
    ("text", {}),
    ("text", {"format": "markdown"}),
    ("image", {"mime": "image/png"}),
    (
        "image",
        {
            "mime": "image/svg+xml",
            "size": 2**40,
            "width": 1,
            "height": 65535,
            "name": "cat.svg",
            "blurhash": "LEHV6nWB2yk8",
        },
    ),
    ("gif", {"mime": "image/gif", "loop": True, "width": 320, "height": 240}),
    ("reaction", {"emoji": "👍🏽", "target": "msg_01H-x", "remove": False}),
    ("file", {"name": "report (final).pdf", "mime": "application/pdf", "size": 0}),
    ("audio", {"mime": "audio/ogg", "duration_ms": 86_400_000, "waveform": [0, 255] * 128}),
    ("video", {"mime": "video/mp4", "duration_ms": 0, "size": 10, "width": 1920, "height": 1080}),
    ("location", {"latitude": -90, "longitude": 180.0, "accuracy_m": 0, "name": "Home"}),
    ("location", {"latitude": 51.5072, "longitude": -0.1276}),
]


@pytest.mark.parametrize(("media_type", "metadata"), GOOD)
def test_good_metadata_is_returned_unchanged(media_type: str, metadata: dict[str, Any]) -> None:
    assert validate_metadata(parse_media_type(media_type), metadata) is metadata


BAD: list[tuple[str, dict[str, Any], str, str]] = [
    ("text", {"format": "html"}, "metadata.format", "must be one of plain, markdown"),
    ("image", {}, "metadata.mime", "is required"),
    (
        "image",
        {"mime": "text/plain"},
        "metadata.mime",
        "must match ^image/[a-z0-9.+-]{1,64}$",
    ),
    (
        "image",
        {"mime": "image/png\n"},  # Python's "$" alone would let the newline through
        "metadata.mime",
        "must match ^image/[a-z0-9.+-]{1,64}$",
    ),
    ("image", {"mime": "image/png", "width": 0}, "metadata.width", "must be at least 1"),
    ("image", {"mime": "image/png", "height": 65536}, "metadata.height", "must be at most 65535"),
    ("image", {"mime": "image/png", "width": 1.5}, "metadata.width", "must be an integer"),
    (
        "image",
        {"mime": "image/png", "blurhash": "abc"},
        "metadata.blurhash",
        "must be at least 6 characters long",
    ),
    ("image", {"mime": "image/png", "name": ""}, "metadata.name", "must not be empty"),
    ("gif", {"mime": "image/png"}, "metadata.mime", "must be image/gif"),
    ("gif", {"mime": "image/gif", "loop": "yes"}, "metadata.loop", "must be a boolean"),
    ("reaction", {"emoji": "👍"}, "metadata.target", "is required"),
    ("reaction", {"target": "m1"}, "metadata.emoji", "is required"),
    (
        "reaction",
        {"emoji": "👍", "target": "../m1"},
        "metadata.target",
        "must match ^[A-Za-z0-9_-]{1,64}$",
    ),
    (
        "reaction",
        {"emoji": "x" * 33, "target": "m1"},
        "metadata.emoji",
        "must be at most 32 characters long",
    ),
    ("file", {"name": "a.txt", "mime": "text/plain"}, "metadata.size", "is required"),
    ("file", {"name": "a/b", "mime": "text/plain", "size": 1}, "metadata.name", "must match"),
    ("file", {"name": "a\\b", "mime": "text/plain", "size": 1}, "metadata.name", "must match"),
    ("file", {"name": "a\x00b", "mime": "text/plain", "size": 1}, "metadata.name", "must match"),
    ("file", {"name": "a", "mime": "text", "size": 1}, "metadata.mime", "must match"),
    ("file", {"name": "a", "mime": "x/y", "size": -1}, "metadata.size", "must be at least 0"),
    (
        "file",
        {"name": "a", "mime": "x/y", "size": 2**40 + 1},
        "metadata.size",
        "must be at most 1099511627776",
    ),
    (
        "audio",
        {"mime": "audio/ogg", "duration_ms": 1, "waveform": [0, 1, 2, 256]},
        "metadata.waveform.3",
        "must be at most 255",
    ),
    (
        "audio",
        {"mime": "audio/ogg", "duration_ms": 1, "waveform": [0] * 257},
        "metadata.waveform",
        "must have at most 256 items",
    ),
    (
        "audio",
        {"mime": "audio/ogg", "duration_ms": 86_400_001},
        "metadata.duration_ms",
        "must be at most 86400000",
    ),
    ("audio", {"mime": "audio/ogg"}, "metadata.duration_ms", "is required"),
    ("video", {"mime": "audio/ogg", "duration_ms": 1}, "metadata.mime", "must match ^video/"),
    (
        "video",
        {"mime": "video/mp4", "duration_ms": 1, "width": 0},
        "metadata.width",
        "must be at least 1",
    ),
    ("location", {"latitude": 91, "longitude": 0}, "metadata.latitude", "must be at most 90"),
    (
        "location",
        {"latitude": 0, "longitude": -180.5},
        "metadata.longitude",
        "must be at least -180",
    ),
    ("location", {"latitude": 0, "longitude": "0"}, "metadata.longitude", "must be a number"),
    (
        "location",
        {"latitude": 0, "longitude": 0, "accuracy_m": -1},
        "metadata.accuracy_m",
        "must be at least 0",
    ),
    ("location", {"longitude": 0}, "metadata.latitude", "is required"),
]


@pytest.mark.parametrize(("media_type", "metadata", "field", "reason"), BAD)
def test_bad_metadata_names_the_field(
    media_type: str, metadata: dict[str, Any], field: str, reason: str
) -> None:
    got_field, got_reason = metadata_refused(media_type, metadata)
    assert got_field == field
    assert got_reason.startswith(reason)
    assert "'" not in got_reason and "None" not in got_reason  # no Python reprs


@pytest.mark.parametrize(
    ("media_type", "metadata"),
    [
        ("text", {"fromat": "plain"}),
        ("image", {"mime": "image/png", "colour": "red"}),
        ("location", {"latitude": 0, "longitude": 0, "colour": "red"}),
    ],
)
def test_unknown_property_is_named(media_type: str, metadata: dict[str, Any]) -> None:
    typo = next(key for key in metadata if key in ("fromat", "colour"))
    assert metadata_refused(media_type, metadata) == (
        f"metadata.{typo}",
        f"is not a known property of {media_type}",
    )


@pytest.mark.parametrize(
    ("media_type", "metadata", "field", "reason"),
    [
        ("image", {"mime": "image/png", "width": True}, "metadata.width", "must be an integer"),
        (
            "file",
            {"name": "a", "mime": "x/y", "size": False},
            "metadata.size",
            "must be an integer",
        ),
        ("location", {"latitude": True, "longitude": 0}, "metadata.latitude", "must be a number"),
    ],
)
def test_booleans_are_not_numbers(
    media_type: str, metadata: dict[str, Any], field: str, reason: str
) -> None:
    assert metadata_refused(media_type, metadata) == (field, reason)


def test_absent_metadata_is_fine_for_text_and_names_what_others_need() -> None:
    assert validate_metadata(parse_media_type("text"), None) is None
    assert metadata_refused("image", None) == ("metadata.mime", "is required")
    assert metadata_refused("reaction", None) == ("metadata.emoji", "is required")
    assert metadata_refused("location", None) == ("metadata.latitude", "is required")


@pytest.mark.parametrize("metadata", [[], "x", 5, True, {1: "a"}, {("a",): 1}])
def test_metadata_must_be_a_json_object(metadata: Any) -> None:
    assert metadata_refused("text", metadata) == ("metadata", "must be a JSON object")


@pytest.mark.parametrize(
    "metadata",
    [
        {"latitude": float("nan"), "longitude": 0},  # NaN passes every bound otherwise
        {"latitude": 0, "longitude": float("inf")},
        {"latitude": 0, "longitude": 0, "name": {"x"}},
        {"latitude": 0, "longitude": 0, "name": {"nested": {1: 2}}},
    ],
)
def test_metadata_must_hold_only_json_values(metadata: dict[str, Any]) -> None:
    assert metadata_refused("location", metadata) == ("metadata", "must contain only JSON values")


def test_oversize_metadata_is_refused_by_its_utf8_compact_encoding() -> None:
    custom = {"type": "object"}
    overhead = len('{"note":""}')
    fits = {"note": "x" * (MAX_METADATA_BYTES - overhead)}
    assert validate_metadata(ORDER, fits, custom) is fits
    # Same character count, but "é" is two bytes in UTF-8.
    too_big = {"note": "é" + "x" * (MAX_METADATA_BYTES - overhead - 1)}
    assert refused(validate_metadata, ORDER, too_big, custom) == (
        "metadata",
        f"must be at most {MAX_METADATA_BYTES} bytes as compact JSON",
    )


def test_oversize_is_checked_before_the_schema() -> None:
    metadata = {"mime": "image/png", "name": "x" * MAX_METADATA_BYTES}
    assert metadata_refused("image", metadata) == (
        "metadata",
        f"must be at most {MAX_METADATA_BYTES} bytes as compact JSON",
    )


def test_deeply_nested_metadata_is_refused_not_crashing() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(3000):
        node["a"] = {}
        node = node["a"]
    assert refused(validate_metadata, ORDER, deep, {"type": "object"}) == (
        "metadata",
        "is nested too deeply",
    )


def test_a_schema_that_loops_on_itself_is_reported_not_crashing() -> None:
    looping = {
        "type": "object",
        "$defs": {"a": {"$ref": "#/$defs/a"}},
        "properties": {"x": {"$ref": "#/$defs/a"}},
    }
    assert refused(validate_metadata, ORDER, {"x": 1}, looping) == (
        "metadata",
        "is nested too deeply",
    )


def test_field_prefix_is_used_for_every_path() -> None:
    image = parse_media_type("image")
    bad = {"mime": "image/png", "width": 0}
    assert refused(validate_metadata, image, bad, field="envelope.metadata") == (
        "envelope.metadata.width",
        "must be at least 1",
    )
    assert refused(validate_metadata, image, None, field="m") == ("m.mime", "is required")


def test_unknown_media_type_object_is_refused() -> None:
    call = MediaType("call.offer", None, None)
    assert refused(validate_metadata, call, {}) == ("media_type", "is not a known media type")


# --- custom schemas ---------------------------------------------------------------


def test_good_custom_schema_is_returned() -> None:
    assert validate_custom_schema(ORDER_SCHEMA) is ORDER_SCHEMA
    assert validate_custom_schema({"type": "object"}) == {"type": "object"}


@pytest.mark.parametrize("schema", [[], "object", None, 5, {1: "a"}])
def test_custom_schema_must_be_an_object(schema: Any) -> None:
    assert refused(validate_custom_schema, schema) == ("schema", "must be a JSON object")


@pytest.mark.parametrize(
    ("schema", "field", "reason"),
    [
        (
            {"type": "object", "properties": {"width": {"type": "integr"}}},
            "schema.properties.width.type",
            "must be one of array, boolean, integer, null, number, object, string",
        ),
        (
            {"type": "object", "properties": {"w": {"minLength": -1}}},
            "schema.properties.w.minLength",
            "must be at least 0",
        ),
        (
            {"type": "object", "properties": {"w": {"pattern": "(unclosed"}}},
            "schema.properties.w.pattern",
            "must be a valid regex",
        ),
        ({"type": "object", "required": "sku"}, "schema.required", "must be an array"),
        ({"type": "object", "properties": []}, "schema.properties", "must be a JSON object"),
    ],
)
def test_invalid_schema_names_the_location(schema: dict[str, Any], field: str, reason: str) -> None:
    assert refused(validate_custom_schema, schema) == (field, reason)


@pytest.mark.parametrize(
    ("schema", "field"),
    [
        (
            {"type": "object", "properties": {"a": {"$ref": "https://evil.example/s.json"}}},
            "schema.properties.a.$ref",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "other.json#/x"}}},
            "schema.properties.a.$ref",
        ),
        ({"type": "object", "$defs": {"a": {"$ref": "/etc/passwd"}}}, "schema.$defs.a.$ref"),
        (
            {"type": "object", "allOf": [{"$dynamicRef": "http://x/y#m"}]},
            "schema.allOf.0.$dynamicRef",
        ),
    ],
)
def test_remote_references_are_refused(schema: dict[str, Any], field: str) -> None:
    assert refused(validate_custom_schema, schema) == (
        field,
        "must be a local reference starting with #",
    )


def test_local_reference_to_nothing_is_refused() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    assert refused(validate_custom_schema, schema) == (
        "schema",
        "has a reference to nothing: #/$defs/missing",
    )


def test_local_references_work_and_nothing_is_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    schema = {
        "$id": "https://shop.example/schemas/order",  # an $id is a name, never fetched
        "type": "object",
        "properties": {"line": {"$ref": "#/$defs/line"}, "tag": {"$ref": "#tag"}},
        "$defs": {
            "line": {"type": "object", "required": ["sku"]},
            "tag": {"$anchor": "tag", "type": "string"},
        },
    }
    assert validate_custom_schema(schema) is schema
    good = {"line": {"sku": "A1"}, "tag": "x"}
    assert validate_metadata(ORDER, good, schema) is good
    assert refused(validate_metadata, ORDER, {"line": {}}, schema) == (
        "metadata.line.sku",
        "is required",
    )
    assert refused(validate_metadata, ORDER, {"tag": 1}, schema) == (
        "metadata.tag",
        "must be a string",
    )


@pytest.mark.parametrize(
    "dialect",
    [
        "http://json-schema.org/draft-07/schema#",
        "https://json-schema.org/draft/2019-09/schema",
        "https://evil.example/schema",
    ],
)
def test_schema_dialect_other_than_2020_12_is_refused(dialect: str) -> None:
    assert refused(validate_custom_schema, {"$schema": dialect, "type": "object"}) == (
        "schema.$schema",
        "must be https://json-schema.org/draft/2020-12/schema",
    )


@pytest.mark.parametrize("schema", [{"type": "array"}, {}, {"type": ["object", "null"]}])
def test_schema_top_level_must_describe_an_object(schema: dict[str, Any]) -> None:
    assert refused(validate_custom_schema, schema) == (
        "schema.type",
        'must be "object" (metadata is a JSON object)',
    )


def test_oversize_schema_is_refused() -> None:
    schema = {"type": "object", "description": "x" * MAX_SCHEMA_BYTES}
    assert refused(validate_custom_schema, schema, field="apps.0.schema") == (
        "apps.0.schema",
        f"must be at most {MAX_SCHEMA_BYTES} bytes as compact JSON",
    )


def test_deeply_nested_schema_is_refused_not_crashing() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"a": {}}}
    node = schema["properties"]["a"]
    for _ in range(700):
        node["items"] = {}
        node = node["items"]
    assert refused(validate_custom_schema, schema) == ("schema", "is nested too deeply")


# --- metadata against a custom schema ---------------------------------------------


def test_custom_metadata_is_validated_against_the_registered_schema() -> None:
    good = {"total_cents": 1250, "lines": [{"sku": "A1", "qty": 2}]}
    assert validate_metadata(ORDER, good, ORDER_SCHEMA) is good


@pytest.mark.parametrize(
    ("metadata", "field", "reason"),
    [
        ({"total_cents": -1}, "metadata.total_cents", "must be at least 0"),
        ({"total_cents": True}, "metadata.total_cents", "must be an integer"),
        ({"total_cents": 1, "lines": [{"sku": "A"}, {}]}, "metadata.lines.1.sku", "is required"),
        (
            {"total_cents": 1, "lines": [{"sku": "A", "qty": "2"}]},
            "metadata.lines.0.qty",
            "must be an integer",
        ),
        (
            {"total_cents": 1, "note": "x"},
            "metadata.note",
            "is not a known property of app.shop-42.order",
        ),
        (None, "metadata.total_cents", "is required"),
    ],
)
def test_custom_metadata_failure_names_the_field(
    metadata: dict[str, Any] | None, field: str, reason: str
) -> None:
    assert refused(validate_metadata, ORDER, metadata, ORDER_SCHEMA) == (field, reason)


def test_custom_type_without_required_properties_accepts_absent_metadata() -> None:
    assert validate_metadata(ORDER, None, {"type": "object"}) is None


def test_custom_type_with_no_schema_is_not_registered() -> None:
    assert refused(validate_metadata, ORDER, {"total_cents": 1}) == (
        "media_type",
        "is not registered",
    )
    assert refused(validate_metadata, ORDER, None, None) == ("media_type", "is not registered")


def test_broken_registered_schema_is_reported_on_the_media_type() -> None:
    field, reason = refused(validate_metadata, ORDER, {}, {"type": "array"})
    assert field == "media_type"
    assert reason.startswith("has an invalid schema")
    remote = {"type": "object", "properties": {"a": {"$ref": "https://evil.example/x"}}}
    assert refused(validate_metadata, ORDER, {"a": 1}, remote)[0] == "media_type"


@pytest.mark.parametrize(
    ("schema", "metadata", "field", "reason"),
    [
        (
            {"type": "object", "properties": {"legacy": False}},
            {"legacy": 1},
            "metadata.legacy",
            "is not allowed",
        ),
        (
            {
                "type": "object",
                "properties": {
                    "v": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 3}]}
                },
            },
            {"v": 1},
            "metadata.v",
            "must be at least 3",
        ),
        (
            {"type": "object", "dependentRequired": {"amount": ["currency"]}},
            {"amount": 5},
            "metadata.currency",
            "is required when amount is present",
        ),
        (
            {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}},
            {"Bad": 1},
            "metadata.Bad",
            "is not an allowed property name (must match ^[a-z]+$)",
        ),
        (
            {"type": "object", "properties": {"k": {"enum": ["a", 1, None]}}},
            {"k": "b"},
            "metadata.k",
            "must be one of a, 1, null",
        ),
        (
            {"type": "object", "properties": {"c": {"type": ["string", "null"]}}},
            {"c": 1},
            "metadata.c",
            "must be a string or null",
        ),
    ],
)
def test_custom_schema_keywords_give_readable_reasons(
    schema: dict[str, Any], metadata: dict[str, Any], field: str, reason: str
) -> None:
    assert refused(validate_metadata, ORDER, metadata, schema) == (field, reason)
