"""The strict-mode subset of JSON Schema that structured outputs accept: references,
the strictness rules the provider enforces, and a walk that spoils one enum value.

Strict mode demands, for every object: ``additionalProperties: false`` and a ``required``
list naming every property. The root must be an object. ``$ref`` points into ``$defs``
(or ``definitions``), or ``#`` for recursion.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]
MAX_DEPTH = 6  # recursion through $ref stops here: optional values become null


class SchemaProblem(ValueError):
    """The schema breaks a strict-mode rule; the message says where, like the provider."""


def resolve(schema: Schema, root: Schema) -> Schema:
    """``schema`` with its ``$ref`` chain followed (other keys next to a $ref are merged)."""
    seen: set[str] = set()
    while isinstance(schema.get("$ref"), str):
        ref: str = schema["$ref"]
        if ref in seen:
            raise SchemaProblem(f"reference cycle through {ref!r}")
        seen.add(ref)
        target = _pointer(ref, root)
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **rest}
    return schema


def _pointer(ref: str, root: Schema) -> Schema:
    if not ref.startswith("#"):
        raise SchemaProblem(f"only local references are supported, got {ref!r}")
    node: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        key = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or key not in node:
            raise SchemaProblem(f"reference {ref!r} points at nothing")
        node = node[key]
    if not isinstance(node, dict):
        raise SchemaProblem(f"reference {ref!r} is not a schema")
    return node


def check_strict(root: Schema) -> None:
    """Raise ``SchemaProblem`` where ``root`` breaks a strict-mode rule."""
    top = resolve(root, root)
    if top.get("type") != "object" or "anyOf" in top:
        raise SchemaProblem(
            f"schema must be a JSON Schema of 'type: \"object\"', got "
            f"'type: \"{top.get('type')}\"'."
        )
    _check(root, root, ())


def _check(schema: Any, root: Schema, context: tuple[str, ...]) -> None:
    if not isinstance(schema, dict):
        raise SchemaProblem(f"In context={context}, schema must be an object")
    if "$ref" in schema:
        _pointer(schema["$ref"], root)
    for name, sub in (schema.get("$defs") or schema.get("definitions") or {}).items():
        _check(sub, root, (*context, "$defs", name))
    kind = schema.get("type")
    properties = schema.get("properties")
    if kind == "object" or isinstance(properties, dict):
        if schema.get("additionalProperties") is not False:
            raise SchemaProblem(
                f"In context={context}, 'additionalProperties' is required to be supplied "
                "and to be false."
            )
        props = properties if isinstance(properties, dict) else {}
        required = schema.get("required", [])
        missing = [p for p in props if p not in required]
        if not isinstance(required, list) or missing:
            raise SchemaProblem(
                f"In context={context}, 'required' is required to be supplied and to be an "
                f"array including every key in properties. Missing '{missing[0]}'."
            )
        for name, sub in props.items():
            _check(sub, root, (*context, "properties", name))
    if isinstance(schema.get("items"), dict):
        _check(schema["items"], root, (*context, "items"))
    for key in ("anyOf", "allOf"):
        for index, sub in enumerate(schema.get(key) or []):
            _check(sub, root, (*context, key, str(index)))


def enum_of(schema: Schema, root: Schema) -> list[Any] | None:
    """The enum a value must come from (also through ``anyOf``), if there is one."""
    schema = resolve(schema, root)
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    for variant in schema.get("anyOf") or []:
        found = enum_of(variant, root)
        if found is not None:
            return found
    return None


def outside(enum: list[Any], current: object) -> str:
    """A plausible wrong label: the right one capitalised, as a sloppy model writes it."""
    for candidate in (str(current).title(), str(current).upper(), "other", "unknown_label"):
        if candidate not in enum:
            return candidate
    return "unknown_label_" + "x" * len(enum)


def spoil_enum(value: Any, schema: Schema, root: Schema) -> tuple[bool, Any]:
    """``value`` with its first enum-constrained string replaced by one outside the enum."""
    enum = enum_of(schema, root)
    if enum is not None and isinstance(value, str):
        return True, outside(enum, value)
    schema = resolve(schema, root)
    variants = [resolve(v, root) for v in schema.get("anyOf") or []] or [schema]
    for variant in variants:
        if isinstance(value, dict) and isinstance(variant.get("properties"), dict):
            for key, sub in variant["properties"].items():
                if key in value:
                    done, new = spoil_enum(value[key], sub, root)
                    if done:
                        return True, {**value, key: new}
        if isinstance(value, list) and isinstance(variant.get("items"), dict):
            for index, item in enumerate(value):
                done, new = spoil_enum(item, variant["items"], root)
                if done:
                    return True, [*value[:index], new, *value[index + 1 :]]
    return False, value
