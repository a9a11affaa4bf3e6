"""A declared task's JSON schema turned into a pydantic model.

The client builds the strict request schema from a pydantic model and validates every
answer with it, so a schema written in a config file goes the same way as a built-in
handler's output model. The supported subset is what strict structured output accepts:
objects with properties, arrays, strings (enum, format), numbers and integers (bounds),
booleans, and null in a type list. Anything else is refused with the path and the keyword.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

_SCALARS: dict[str, type] = {"string": str, "number": float, "integer": int, "boolean": bool}
_IGNORED = frozenset({"description", "title", "additionalProperties", "required", "$schema"})
_KNOWN = frozenset(
    {"type", "properties", "items", "enum", "format", "minimum", "maximum", "minItems",
     "maxItems", "minLength", "maxLength", "default", "examples", "pattern"}
) | _IGNORED  # fmt: skip


class _Declared(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def model_from_schema(schema: dict[str, Any], name: str) -> type[BaseModel]:
    """A pydantic model for a JSON schema whose top level is an object."""
    if schema.get("type") != "object":
        raise ValueError(f'{name}: the top level must be {{"type": "object", ...}}')
    return _object(schema, name, name)


def import_model(path: str) -> type[BaseModel]:
    """``package.module:ClassName`` -> the pydantic model class it names."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{path!r} is not of the form 'package.module:ClassName'")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {path!r}: {exc}") from None
    if not (isinstance(found, type) and issubclass(found, BaseModel)):
        raise ValueError(f"{path!r} is not a pydantic model class")  # noqa: TRY004 - a config value
    return found


def _object(schema: dict[str, Any], name: str, where: str) -> type[BaseModel]:
    props = schema.get("properties")
    if not isinstance(props, dict) or not props:
        raise ValueError(f"{where}: an object needs a non-empty 'properties'")
    required = set(schema.get("required", props))
    fields: dict[str, Any] = {}
    for key, sub in props.items():
        if not key.isidentifier():
            raise ValueError(f"{where}.{key}: property names must be identifiers")
        annotation = _type(sub, f"{name}_{key}", f"{where}.{key}")
        info = Field(description=sub.get("description"), **_bounds(sub))
        if key not in required:
            annotation = annotation | None
            info = Field(None, description=sub.get("description"), **_bounds(sub))
        fields[key] = (annotation, info)
    return create_model(_class_name(name), __base__=_Declared, **fields)


def _type(schema: Any, name: str, where: str) -> Any:
    if not isinstance(schema, dict):
        raise ValueError(f"{where}: a schema must be an object")  # noqa: TRY004 - a config value
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(
            f"{where}: unsupported keyword(s) {', '.join(sorted(unknown))}; "
            f"supported: {', '.join(sorted(_KNOWN))}"
        )
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}: enum must be a non-empty list")
        return Literal[tuple(values)]
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) != 1:
            raise ValueError(f"{where}: a type list may hold one type and 'null'")
        inner = _type({**schema, "type": kinds[0]}, name, where)
        return inner | None if "null" in kind else inner
    if kind == "object":
        return _object(schema, name, where)
    if kind == "array":
        return list[_type(schema.get("items", {}), name, f"{where}[]")]  # type: ignore[misc]
    if kind in _SCALARS:
        return _SCALARS[kind]
    raise ValueError(
        f"{where}: type {kind!r} is not supported; use one of object, array, {', '.join(_SCALARS)}"
    )


def _bounds(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, arg in (("minimum", "ge"), ("maximum", "le"), ("minLength", "min_length"),
                     ("maxLength", "max_length"), ("minItems", "min_length"),
                     ("maxItems", "max_length"), ("pattern", "pattern")):  # fmt: skip
        if key in schema:
            out[arg] = schema[key]
    return out


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_")) or "Answer"
