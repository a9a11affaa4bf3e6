"""``GET /v1/models`` and ``GET /v1/models/{id}``: the models the simulator stands in for."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from stream.simulator.errors import ApiError, json_response

OWNER = "sluicegate-simulator"
CREATED = 1_767_225_600  # 2026-01-01, fixed so answers are reproducible
MODELS = ("gpt-5.4-nano", "gpt-5.4-mini", "gpt-5.4", "omni-moderation-latest")


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": OWNER}


async def list_models(request: web.Request) -> web.Response:
    return json_response({"object": "list", "data": [_model(m) for m in MODELS]})


async def retrieve(request: web.Request) -> web.Response:
    model_id = request.match_info["model"]
    if model_id not in MODELS:
        raise ApiError(
            404,
            f"The model '{model_id}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
    return json_response(_model(model_id))
