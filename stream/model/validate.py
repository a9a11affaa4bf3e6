"""Validating a batch answer item by item: what is kept, and why the rest is asked again.

Each item is validated on its own, so one bad item costs one lone retry, not the batch.
An id that comes more than once is trusted for none of its items (which one is that
event's answer?), and an id that was not asked is ignored, except in the answer to one
event that holds one item: that item is the event's whatever id it carries.
"""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, ValidationError

from handlers.model import Task
from stream.model.prompt import BATCH_KEY, ID_KEY


def collect(
    task: Task,
    item_model: type[BaseModel],
    events: list[tuple[str, str]],
    content: str,
    outputs: dict[str, BaseModel],
) -> str | None:
    """Put each valid item of ``content`` into ``outputs``; return why the answer is
    unusable for the events still unanswered, if any are."""
    try:
        parsed = json.loads(content)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc})"
    items = parsed.get(BATCH_KEY) if isinstance(parsed, dict) else None
    if not isinstance(items, list):
        return f'no "{BATCH_KEY}" list in the answer'
    wanted = {eid for eid, _ in events}
    problems = []
    valid: dict[str, list[BaseModel]] = {}
    for raw in items:
        try:
            item = item_model.model_validate(raw)
        except ValidationError as exc:
            problems.append(_brief(exc))
            continue
        valid.setdefault(getattr(item, ID_KEY), []).append(item)
    if len(events) == 1 and len(valid) == 1 and len(items) == 1:
        # One event, one valid item: the answer is that event's, whatever id it gives
        # (small models often miscopy the id, or leave it empty).
        valid = {events[0][0]: next(iter(valid.values()))}
    for eid, found in valid.items():
        if len(found) > 1:
            problems.append(f"the id {eid!r} came {len(found)} times (more than once)")
        elif eid in wanted and eid not in outputs:
            outputs[eid] = task.output.model_validate(found[0].model_dump(exclude={ID_KEY}))
    missing = [eid for eid in wanted if eid not in outputs]
    if not missing:
        return None
    return "; ".join(problems) or f"no item for event ids {', '.join(sorted(missing))}"


def salvage(content: str) -> str | None:
    """The complete items of an answer cut off mid-way (``finish_reason=length``), as a
    whole answer: ``{"results": [<each item that was written to its end>]}``; None if
    not even the start of the list is there. A long batch answer that ran out of tokens
    keeps the items it finished, and only the rest is asked again."""
    start = re.search(r'\{\s*"' + BATCH_KEY + r'"\s*:\s*\[', content)
    if start is None:
        return None
    decoder = json.JSONDecoder()
    items: list[object] = []
    at = start.end()
    while True:
        at = _SEPARATORS.match(content, at).end()  # type: ignore[union-attr]  # matches ""
        try:
            item, at = decoder.raw_decode(content, at)
        except json.JSONDecodeError:
            break
        items.append(item)
    return json.dumps({BATCH_KEY: items})


_SEPARATORS = re.compile(r"[\s,]*")


def _brief(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "item"
    return f"{where}: {first['msg']} (got {str(first.get('input'))[:60]!r})"
