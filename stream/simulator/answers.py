"""Answers that validate against the request's own JSON schema and make sense for the
events in the prompt.

Micro-batching: when the schema's top level has ``results`` (an array of objects with an
``id``), the answer holds one item per ``<event id="...">`` block, in order, each with
that event's id. Otherwise it answers for the first event (or the whole user message).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from stream.model.prompt import BATCH_KEY, ID_KEY
from stream.simulator import labels, oracle
from stream.simulator.jsonschema import MAX_DEPTH, Schema, resolve
from stream.simulator.teacher import Teacher

Event = tuple[str, str]
_FENCED = re.compile(r"```(?:json)?\s*\n(.*?)\n\s*```", re.DOTALL)
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
_ISO_START = re.compile(r"\d{4}-\d{2}-\d{2}T")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_PROSE = {"summary", "reason", "reasoning", "rationale", "explanation", "description"}
_TEMPLATE = {"template", "event_template", "log_template"}
_COMPONENT = {"component", "service", "logger", "program"}
_TIME = {"timestamp", "time", "ts", "datetime", "event_time", "logged_at"}
_PARAMETERS = {"parameters", "params", "variables"}
_FORMATS = {
    "date": "2025-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "hostname": "example.com",
    "ipv6": "2001:db8::1",
    "duration": "PT1S",
}
SENTIMENTS = ["positive", "negative", "neutral"]


class Writer:
    """Generates one JSON value for a schema, from the text of one event."""

    def __init__(self, root: Schema, salt: object = None, teacher: Teacher | None = None) -> None:
        self.root = root
        self.salt = salt
        self.teacher = teacher

    def value(self, schema: Schema, text: str, path: str, depth: int = 0) -> Any:
        schema = resolve(schema, self.root)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list):
            taught = self.teacher.enum(schema["enum"], text) if self.teacher else None
            return labels.enum_value(schema["enum"], text, path) if taught is None else taught
        variants = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(variants, list) and variants:
            chosen = self._variant([resolve(v, self.root) for v in variants], depth)
            return self.value(chosen, text, path, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            real = [k for k in kind if k != "null"]
            kind = "null" if not real or (depth >= MAX_DEPTH and "null" in kind) else real[0]
        if kind == "object" or "properties" in schema:
            props: dict[str, Schema] = schema.get("properties") or {}
            return {k: self.value(s, text, f"{path}.{k}", depth + 1) for k, s in props.items()}
        return self._scalar(schema, kind, text, path, depth)

    def _scalar(self, schema: Schema, kind: object, text: str, path: str, depth: int) -> Any:
        name = path.rsplit(".", 1)[-1].split("[", maxsplit=1)[0]
        if kind == "array":
            return self._array(schema, text, path, depth)
        if kind == "boolean":
            return labels.boolean_value(name, text, path)
        if kind in ("number", "integer"):
            taught = self.teacher.score(path, text) if self.teacher else None
            if taught is not None:
                return taught
            return self._number(schema, str(kind), name, text, path)
        if kind == "null":
            return None
        return self._string(schema, name, text, path)

    def _variant(self, variants: list[Schema], depth: int) -> Schema:
        real = [v for v in variants if v.get("type") != "null"]
        nulls = [v for v in variants if v.get("type") == "null"]
        if nulls and (depth >= MAX_DEPTH or not real):
            return nulls[0]
        return real[0] if real else variants[0]

    def _array(self, schema: Schema, text: str, path: str, depth: int) -> list[Any]:
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", max(low, 3)))
        items = schema.get("items") or {}
        name = labels.norm(path.rsplit(".", 1)[-1].split("[", maxsplit=1)[0])
        if name in _PARAMETERS and depth < MAX_DEPTH:
            bounds = (low, int(schema.get("maxItems", 64)))
            return self._parameters(resolve(items, self.root), text, path, depth, bounds)
        count = low if depth >= MAX_DEPTH else 1 + int(oracle.stable_fraction(text, path) * 2)
        count = max(low, min(high, count))
        return [self.value(items, text, f"{path}[{i}]", depth + 1) for i in range(count)]

    def _parameters(
        self, items: Schema, text: str, path: str, depth: int, bounds: tuple[int, int]
    ) -> list[Any]:
        """A log line's parameters: the values its template replaced by ``<*>``, as
        ``{"name", "value"}`` objects (or plain strings), padded or cut to the bounds."""
        found = oracle.log_line(text).parameters[: bounds[1]]
        props: dict[str, Schema] = items.get("properties") or {}
        out: list[Any] = []
        for index, (name, value) in enumerate(found):
            item_path = f"{path}[{index}]"
            if items.get("type") == "string":
                out.append(value)
            elif "value" in props or "name" in props:
                item = self.value(items, text, item_path, depth + 1)
                for key, given in (("name", name), ("value", value)):
                    if key in props and _takes_string(resolve(props[key], self.root)):
                        item[key] = given
                out.append(item)
            else:
                out.append(self.value(items, text, item_path, depth + 1))
        while len(out) < bounds[0]:
            out.append(self.value(items, text, f"{path}[{len(out)}]", depth + 1))
        return out

    def _number(self, schema: Schema, kind: str, name: str, text: str, path: str) -> float | int:
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum", schema.get("exclusiveMaximum"))
        unit = labels.unit_score(name, text, path)
        if unit is not None and labels.norm(name).startswith("sentiment") and (low or 0) < 0:
            unit = oracle.sentiment(text).compound
        elif unit is not None and high is not None and high > 1.5:
            unit = unit * high
        if unit is None:
            lo = low if low is not None else (high - 100 if high is not None else 0)
            hi = high if high is not None else lo + 100
            unit = lo + (hi - lo) * oracle.stable_fraction(text, path, self.salt)
        if "exclusiveMinimum" in schema:
            unit = max(unit, schema["exclusiveMinimum"] + (1 if kind == "integer" else 1e-6))
        if "exclusiveMaximum" in schema:
            unit = min(unit, schema["exclusiveMaximum"] - (1 if kind == "integer" else 1e-6))
        unit = min(max(unit, low if low is not None else unit), high if high is not None else unit)
        step = schema.get("multipleOf")
        if step:
            unit = round(unit / step) * step
        return round(unit) if kind == "integer" else round(float(unit), 4)

    def _string(self, schema: Schema, name: str, text: str, path: str) -> str:
        fmt = schema.get("format")
        key = labels.norm(name)
        if fmt == "date-time" or (key in _TIME and fmt is None):
            found = _TIMESTAMP.search(text)
            stamp = oracle.log_time(text)
            if fmt == "date-time" and stamp is not None and not _ISO_START.match(stamp):
                stamp = None  # a syslog stamp has no year: not a date-time
            out = stamp or (found.group(0).replace(" ", "T") if found else "2025-01-01T00:00:00Z")
        elif key in _TEMPLATE and fmt is None and "enum" not in schema:
            out = oracle.log_line(text).template or phrase(text, path)
        elif key in _COMPONENT and fmt is None:
            out = oracle.log_line(text).component or "unknown"
        elif fmt == "uuid":
            out = str(uuid.UUID(int=int(oracle.stable_fraction(text, path) * 2**64)))
        elif fmt == "ipv4":
            ip = _IPV4.search(text)
            out = ip.group(0) if ip else "192.0.2.1"
        elif fmt in _FORMATS:
            out = _FORMATS[fmt]
        elif key in {"language", "lang"}:
            out = "en"
        else:
            out = phrase(text, path, long=key in _PROSE)
        low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
        while len(out) < low:
            out += " " + out if out else "x"
        return out[: int(high)] if high is not None else out


def _takes_string(schema: Schema) -> bool:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    variants = schema.get("anyOf") or []
    return "string" in kinds or any(v.get("type") == "string" for v in variants)


def phrase(text: str, path: str, *, long: bool = False) -> str:
    """A few words taken from ``text``: what a model quoting the event would write."""
    words = [w.strip(".,;:!?\"'()[]") for w in text.split()]
    words = [w for w in words if w]
    if not words:
        return "simulated answer"
    if long:
        return " ".join(words[:12])
    size = 2 + int(oracle.stable_fraction(path, text) * 4)
    start = int(oracle.stable_fraction(text, path) * max(1, len(words) - size + 1))
    return " ".join(words[start : start + size])


def batch_items(schema: Schema, root: Schema) -> Schema | None:
    """The item schema when ``schema`` is a micro-batch answer (``results`` of id'd items)."""
    top = resolve(schema, root)
    results = (top.get("properties") or {}).get(BATCH_KEY)
    if not isinstance(results, dict):
        return None
    results = resolve(results, root)
    items = results.get("items")
    if results.get("type") != "array" or not isinstance(items, dict):
        return None
    items = resolve(items, root)
    return items if ID_KEY in (items.get("properties") or {}) else None


def _event_id(schema: Schema, event_id: str) -> object:
    if schema.get("type") == "integer":
        return int(event_id) if event_id.lstrip("-").isdigit() else 0
    return event_id


def structured(
    schema: Schema,
    events: Sequence[Event],
    fallback: str,
    salt: object,
    teacher: Teacher | None = None,
) -> Any:
    """The answer for ``events`` (or the ``fallback`` text when there are none); a
    ``teacher`` answers the labelled fields of the texts it knows."""
    writer = Writer(schema, salt, teacher)
    items = batch_items(schema, schema)
    if items is None:
        text = events[0][1] if events else fallback
        return writer.value(schema, text, "$")
    top = resolve(schema, schema)
    answer: dict[str, Any] = {}
    everything = "\n".join(text for _, text in events) or fallback
    for key, sub in top["properties"].items():
        if key != BATCH_KEY:
            answer[key] = writer.value(sub, everything, f"$.{key}")
            continue
        answer[key] = []
        for index, (event_id, text) in enumerate(events):
            item = writer.value(items, text, f"$.{key}[{index}]")
            item[ID_KEY] = _event_id(resolve(items["properties"][ID_KEY], schema), event_id)
            answer[key].append(item)
    return answer


@lru_cache(maxsize=256)
def embedded_schema(text: str) -> Schema | None:
    """A JSON schema written into a prompt (a ```json block, or an inline object schema).
    Cached, as the same instructions come with every request: do not mutate the result."""
    candidates: list[Any] = []
    for block in _FENCED.findall(text):
        try:
            candidates.append(json.loads(block))
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for match in list(re.finditer(r"\{", text))[:200]:
        try:
            candidates.append(decoder.raw_decode(text, match.start())[0])
        except ValueError:
            continue
    for found in candidates:
        schema = found.get("schema") if isinstance(found, dict) else None
        schema = schema if isinstance(schema, dict) else found
        if isinstance(schema, dict) and schema.get("type") == "object" and "properties" in schema:
            return schema
    return None


def free_object(events: Sequence[Event], fallback: str) -> dict[str, Any]:
    """A JSON object when no schema is known: a sentiment label per event."""
    if len(events) > 1:
        return {
            BATCH_KEY: [
                {ID_KEY: eid, "label": labels.enum_value(SENTIMENTS, text, "label")}
                for eid, text in events
            ]
        }
    text = events[0][1] if events else fallback
    return {"label": labels.enum_value(SENTIMENTS, text, "label")}


def plain_text(events: Sequence[Event], fallback: str) -> str:
    text = events[0][1] if events else fallback
    label = labels.enum_value(SENTIMENTS, text, "label")
    return f"Simulated answer: the text reads as {label}."
