"""A fake chat completions server for the model client's tests, as an httpx2 transport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import httpx2
from pydantic import BaseModel

from handlers.model import Task
from stream.config import ModelSettings
from stream.model.client import ModelClient
from stream.model.prompt import parse_events


class Sentiment(BaseModel):
    label: Literal["positive", "negative", "neutral"]
    confidence: float


TASK = Task("sentiment", "Classify the sentiment of each review.", Sentiment)
Reply = Callable[[dict[str, Any], int], httpx2.Response]


def completion(content: str | None, *, finish: str = "stop", refusal: str | None = None,
               usage: tuple[int, int, int] = (100, 10, 0), status: int = 200,
               headers: dict[str, str] | None = None) -> httpx2.Response:  # fmt: skip
    body = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                     "message": {"role": "assistant", "content": content, "refusal": refusal}}],
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                  "total_tokens": usage[0] + usage[1],
                  "prompt_tokens_details": {"cached_tokens": usage[2]}},
    }  # fmt: skip
    return httpx2.Response(status, json=body, headers=headers or {})


def error(status: int, code: str = "x", **headers: str) -> httpx2.Response:
    body = {"error": {"message": f"status {status}", "type": "t", "param": None, "code": code}}
    return httpx2.Response(status, json=body, headers=headers)


def answer(*items: dict[str, Any]) -> str:
    return json.dumps({"results": list(items)})


def good(eid: str, label: str = "positive") -> dict[str, Any]:
    return {"id": eid, "label": label, "confidence": 0.9}


class Server:
    """Records requests; ``reply(body, n)`` answers the n-th (from 0)."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        return self.reply(body, len(self.requests) - 1)

    def events(self, n: int) -> list[str]:
        return [eid for eid, _ in parse_events(self.requests[n]["messages"][1]["content"])]


def client(server: Server, **settings: Any) -> ModelClient:
    transport = httpx2.MockTransport(server)
    config = ModelSettings(api_key="sk-test", base_url="http://sim.test/v1", **settings)
    return ModelClient(config, http_client=httpx2.AsyncClient(transport=transport))


EVENTS = [("a", "I love it"), ("b", "Terrible"), ("c", "It is a chair")]
