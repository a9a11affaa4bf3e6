"""``POST /v1/moderations``: the omni-moderation answer, scored by the same oracle.

``input`` is a string, a list of strings, or a list of ``{"type": "text"|"image_url"}``
parts (images are acknowledged in ``category_applied_input_types`` but not scored).
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from stream.model.tokens import estimate_tokens
from stream.simulator import oracle
from stream.simulator.errors import bad_request, json_response, read_json
from stream.simulator.state import STATE

DEFAULT_MODEL = "omni-moderation-latest"
FLAG_AT = 0.5
# Categories the provider also scores on images.
_IMAGE_CATEGORIES = frozenset(
    {
        "self-harm",
        "self-harm/intent",
        "self-harm/instructions",
        "sexual",
        "violence",
        "violence/graphic",
    }
)


def _inputs(body: dict[str, Any]) -> tuple[list[str], bool]:
    """The texts to score, and whether images came with them."""
    if "input" not in body:
        raise bad_request(
            "Missing required parameter: 'input'.", "input", "missing_required_parameter"
        )
    given = body["input"]
    if isinstance(given, str):
        return [given], False
    if not isinstance(given, list) or not given:
        raise bad_request(
            "Invalid 'input': expected a string, an array of strings or an array of content parts.",
            "input",
            "invalid_type",
        )
    if all(isinstance(item, str) for item in given):
        return list(given), False
    texts, images = [], False
    for index, part in enumerate(given):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            images = True
        else:
            raise bad_request(
                f"Invalid 'input[{index}]': expected a text or image_url part.",
                f"input[{index}]",
                "invalid_type",
            )
    # Multi-modal parts are one input, answered by one result.
    return ["\n".join(texts)], images


def moderate(text: str, *, images: bool = False) -> dict[str, Any]:
    """One result of the omni-moderation shape for ``text``."""
    scores = oracle.category_scores(text)
    categories = {name: score > FLAG_AT for name, score in scores.items()}
    applied = {
        name: ["text", "image"] if images and name in _IMAGE_CATEGORIES else ["text"]
        for name in scores
    }
    return {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": applied,
    }


async def handle(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("Invalid request body: expected a JSON object.")
    texts, images = _inputs(body)
    model = body.get("model") or DEFAULT_MODEL
    if not isinstance(model, str):
        raise bad_request("Invalid 'model': expected a string.", "model", "invalid_type")
    state.limiter.enforce(sum(estimate_tokens(t) for t in texts), model)
    oracle.expect(texts)
    await state.sleep(state.latency_s(0, flex=False))
    return json_response(
        {
            "id": f"modr-{uuid.uuid4().hex[:24]}",
            "model": f"{model}-simulated",
            "results": [moderate(text, images=images) for text in texts],
        }
    )
