"""Media types and their metadata: pure validation, no I/O.

An envelope's ``media_type`` and ``metadata`` travel beside the encrypted body so
the node can route, limit and index a message without reading its content. The
node therefore validates both: predefined types against the JSON Schemas below,
app types (``app.<app-id>.<name>``) against the schema the app registered. Every
failure is an :class:`InvalidInput` naming the exact field (``metadata.width``)
with a short reason an app developer can act on.

Custom schemas are compiled with an empty ``referencing.Registry`` (no retrieve
function) after every non-local ``$ref`` has been refused: nothing is fetched.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeGuard

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from openmessenger.core.apps import APP_ID_PATTERN
from openmessenger.core.errors import InvalidInput

MEDIA_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
MAX_METADATA_BYTES = 8192
MAX_SCHEMA_BYTES = 16384
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _obj(required: Iterable[str] = (), **properties: Any) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties, "required": [*required]}
    return schema | {"additionalProperties": False}  # a typo is an error, not ignored


def _int(minimum: int, maximum: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


def _str(min_length: int, max_length: int) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length, "maxLength": max_length}


def _mime(kind: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{kind}/[a-z0-9.+-]{{1,64}}$"}


def _timed(kind: str, **extra: Any) -> dict[str, Any]:
    duration = _int(0, 86_400_000)
    return _obj(["mime", "duration_ms"], mime=_mime(kind), duration_ms=duration, **extra)


_SIZE = _int(0, 2**40)
_PIXELS = _int(1, 65535)
_NAME = _str(1, 255)
_BOOL = {"type": "boolean"}
_IMAGE = dict(size=_SIZE, width=_PIXELS, height=_PIXELS, name=_NAME, blurhash=_str(6, 100))
_SCHEMAS: dict[str, dict[str, Any]] = {  # Draft 2020-12, one per predefined media type
    "text": _obj(format={"enum": ["plain", "markdown"]}),
    "image": _obj(["mime"], mime=_mime("image"), **_IMAGE),
    "gif": _obj(["mime"], mime={"const": "image/gif"}, loop=_BOOL, **_IMAGE),
    "reaction": _obj(
        ["emoji", "target"],
        emoji=_str(1, 32),
        target={"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        remove=_BOOL,
    ),
    "file": _obj(
        ["name", "mime", "size"],
        name=_NAME | {"pattern": r"^[^/\\\x00]*$"},
        mime={
            "type": "string",
            "pattern": r"^[a-z0-9][a-z0-9.+-]{0,63}/[a-z0-9][a-z0-9.+-]{0,63}$",
        },
        size=_SIZE,
    ),
    "audio": _timed(
        "audio", size=_SIZE, waveform={"type": "array", "maxItems": 256, "items": _int(0, 255)}
    ),
    "video": _timed("video", size=_SIZE, width=_PIXELS, height=_PIXELS),
    "location": _obj(
        ["latitude", "longitude"],
        latitude={"type": "number", "minimum": -90, "maximum": 90},
        longitude={"type": "number", "minimum": -180, "maximum": 180},
        accuracy_m={"type": "number", "minimum": 0},
        name=_NAME,
    ),
}


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    """``pattern`` with ECMA-262's ``$`` (Python's also matches before a final newline)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    if validator.is_type(instance, "string") and not re.search(pattern, instance):
        yield ValidationError("does not match the pattern")


def _properties(validator: Any, properties: Any, instance: Any, schema: Any) -> Any:
    """``properties``, naming the property a ``false`` subschema refuses (jsonschema drops it)."""
    if validator.is_type(instance, "object"):
        for name in [name for name, sub in properties.items() if sub is False and name in instance]:
            yield ValidationError("is not allowed", path=[name], validator=None)
    rest = {name: sub for name, sub in properties.items() if sub is not False}
    yield from Draft202012Validator.VALIDATORS["properties"](validator, rest, instance, schema)


_Validator: Any = validators.extend(
    Draft202012Validator, {"pattern": _pattern, "properties": _properties}
)
_META: Any = Draft202012Validator(
    Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
)
_PREDEFINED: dict[str, Any] = {name: _Validator(schema) for name, schema in _SCHEMAS.items()}
PREDEFINED_MEDIA_TYPES: frozenset[str] = frozenset(_PREDEFINED)
_REF_KEYS = ("$ref", "$dynamicRef")
_TYPES = {"integer": "an integer", "array": "an array", "object": "a JSON object", "null": "null"}


@dataclass(frozen=True, slots=True)
class MediaType:
    """A parsed media type: predefined (``image``) or app-defined (``app.shop-42.order``)."""

    name: str
    app_id: str | None
    local_name: str | None

    @property
    def custom(self) -> bool:
        return self.app_id is not None


def parse_media_type(value: str, *, field: str = "media_type") -> MediaType:
    """Accept a predefined name or ``app.<app-id>.<name>``, in canonical (lower) case only."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if value in PREDEFINED_MEDIA_TYPES:
        return MediaType(value, None, None)
    if not value.startswith("app."):
        raise InvalidInput(field, f"must be one of {', '.join(_PREDEFINED)} or app.<app-id>.<name>")
    app_id, dot, local_name = value.removeprefix("app.").partition(".")
    if not re.fullmatch(APP_ID_PATTERN, app_id):
        raise InvalidInput(field, f"must have an app id matching {APP_ID_PATTERN}")
    if not dot:
        raise InvalidInput(field, "must be app.<app-id>.<name>")
    if not re.fullmatch(MEDIA_NAME_PATTERN, local_name):
        raise InvalidInput(field, f"must have a name matching {MEDIA_NAME_PATTERN}")
    return MediaType(value, app_id, local_name)


def validate_custom_schema(schema: object, *, field: str = "schema") -> dict[str, Any]:
    """Check an app's metadata schema before it is registered; returns it unchanged."""
    if not _is_object(schema):
        raise InvalidInput(field, "must be a JSON object")
    _encode(schema, field, MAX_SCHEMA_BYTES)
    try:
        _check_schema(schema, field)
    except RecursionError:
        raise InvalidInput(field, "is nested too deeply") from None
    return schema


def validate_metadata(
    media_type: MediaType,
    metadata: object | None,
    custom_schema: Mapping[str, Any] | None = None,
    *,
    field: str = "metadata",
) -> dict[str, Any] | None:
    """Check an envelope's metadata for its media type; returns it unchanged (None stays None).

    ``custom_schema`` is the schema registered for a custom type (ignored otherwise).
    """
    if media_type.custom:
        if custom_schema is None:
            raise InvalidInput("media_type", "is not registered")
        try:
            validator = _custom_validator(_encode(dict(custom_schema), "schema", MAX_SCHEMA_BYTES))
        except InvalidInput as exc:
            raise InvalidInput("media_type", f"has an invalid schema ({exc})") from exc
    elif media_type.name in _PREDEFINED:
        validator = _PREDEFINED[media_type.name]
    else:
        raise InvalidInput("media_type", "is not a known media type")
    if metadata is not None:
        if not _is_object(metadata):
            raise InvalidInput(field, "must be a JSON object")
        _encode(metadata, field, MAX_METADATA_BYTES)
    try:
        error = best_match(validator.iter_errors({} if metadata is None else metadata))
    except RecursionError:
        raise InvalidInput(field, "is nested too deeply") from None
    if error is not None:
        _raise_for(error, field, media_type.name)
    return metadata


def _is_object(value: object) -> TypeGuard[dict[str, Any]]:
    return isinstance(value, dict) and all(isinstance(key, str) for key in value)


def _encode(value: dict[str, Any], field: str, limit: int) -> str:
    """Compact JSON of ``value``; refuses non-JSON values (NaN, sets, int keys) and oversize."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        size = len(text.encode())
        if size <= limit and json.loads(text) != value:
            raise ValueError
    except RecursionError:
        raise InvalidInput(field, "is nested too deeply") from None
    except (TypeError, ValueError):
        raise InvalidInput(field, "must contain only JSON values") from None
    if size > limit:
        raise InvalidInput(field, f"must be at most {limit} bytes as compact JSON")
    return text


def _check_schema(schema: dict[str, Any], field: str) -> None:
    if schema.get("$schema", _DIALECT) != _DIALECT:
        raise InvalidInput(f"{field}.$schema", f"must be {_DIALECT}")
    stack: list[tuple[object, str]] = [(schema, field)]
    while stack:  # every "$ref" anywhere, before anything is compiled
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _REF_KEYS and isinstance(value, str) and not value.startswith("#"):
                    raise InvalidInput(f"{path}.{key}", "must be a local reference starting with #")
                stack.append((value, f"{path}.{key}"))
        elif isinstance(node, list):
            stack.extend((value, f"{path}.{index}") for index, value in enumerate(node))
    error = best_match(_META.iter_errors(schema))
    if error is not None:
        _raise_for(error, field, "a JSON Schema")
    if schema.get("type") != "object":
        raise InvalidInput(f"{field}.type", 'must be "object" (metadata is a JSON object)')
    root = DRAFT202012.create_resource(schema)
    resources = [(root, Registry[Any]().resolver_with_root(root))]
    while resources:
        resource, resolver = resources.pop()
        for key in _REF_KEYS:
            ref = resource.contents.get(key) if isinstance(resource.contents, dict) else None
            if isinstance(ref, str):
                try:
                    resolver.lookup(ref)
                except Unresolvable:
                    raise InvalidInput(field, f"has a reference to nothing: {ref}") from None
        resources.extend((sub, resolver.in_subresource(sub)) for sub in resource.subresources())


@functools.lru_cache(maxsize=256)
def _custom_validator(encoded: str) -> Any:
    schema = json.loads(encoded)
    _check_schema(schema, "schema")
    return _Validator(schema, registry=Registry[Any]())  # no retrieve: nothing is ever fetched


_REASONS = {
    "const": "must be {}",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "exclusiveMinimum": "must be greater than {}",
    "exclusiveMaximum": "must be less than {}",
    "multipleOf": "must be a multiple of {}",
    "minLength": "must be at least {} characters long",
    "maxLength": "must be at most {} characters long",
    "pattern": "must match {}",
    "minItems": "must have at least {} items",
    "maxItems": "must have at most {} items",
    "minProperties": "must have at least {} properties",
    "maxProperties": "must have at most {} properties",
    "format": "must be a valid {}",
    "not": "is not allowed",
    "uniqueItems": "must not contain duplicates",
    "anyOf": "does not match any of the allowed forms",
    "oneOf": "must match exactly one of the allowed forms",
    "contains": "must contain a matching item",
    "items": "has too many items",
    "unevaluatedItems": "has too many items",
    "unevaluatedProperties": "has properties that are not allowed",
}


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _reason(keyword: str | None, value: Any) -> str:
    if keyword is None:  # a `false` subschema
        return "is not allowed"
    if keyword == "type":
        kinds = value if isinstance(value, list) else [value]
        return "must be " + " or ".join(_TYPES.get(kind, f"a {kind}") for kind in kinds)
    if keyword == "enum":
        return "must be one of " + ", ".join(_show(item) for item in value)
    if keyword in ("minLength", "minItems") and value == 1:
        return "must not be empty"
    return _REASONS.get(keyword, "does not satisfy " + keyword).format(_show(value))


def _raise_for(error: Any, field: str, subject: str) -> NoReturn:
    """Turn a jsonschema error into InvalidInput naming the failing field precisely."""
    while error.validator in ("anyOf", "oneOf") and error.context:
        specific = [sub for sub in error.context if sub.validator != "type"]
        if not specific:
            break
        error = best_match(specific)
    path = [field, *(str(part) for part in error.absolute_path)]
    keyword, value, instance = error.validator, error.validator_value, error.instance
    reason = _reason(keyword, value)
    if keyword == "required" and isinstance(instance, dict):
        path += [name for name in value if name not in instance][:1]
        reason = "is required"
    elif keyword == "dependentRequired" and isinstance(instance, dict):
        pairs = [(key, name) for key, names in value.items() if key in instance for name in names]
        present, needed = next((k, n) for k, n in pairs if n not in instance)
        path.append(needed)
        reason = f"is required when {present} is present"
    elif keyword == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {})
        patterns = error.schema.get("patternProperties", {})
        extra = [key for key in instance if key not in known]
        path += [key for key in extra if not any(re.search(p, key) for p in patterns)][:1]
        reason = f"is not a known property of {subject}"
    elif "propertyNames" in error.absolute_schema_path and isinstance(instance, str):
        path.append(instance)
        reason = f"is not an allowed property name ({reason})"
    raise InvalidInput(".".join(path), reason)
