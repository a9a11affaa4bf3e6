"""Moderations, models, flex tier, /sim/stats, and the `simulate-nano` command."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
import openai
import pytest
from openai import AsyncOpenAI

from schemas.outputs import MODERATION_CATEGORIES
from stream.simulator.server import running_simulator
from tests.stream.simulator.conftest import FAST, sdk


@pytest.mark.asyncio
async def test_moderation_shape_and_scores(client: AsyncOpenAI) -> None:
    """/v1/moderations answers the omni shape: 13 categories, threats flagged, small talk not."""
    result = await client.moderations.create(
        input=["I will kill you and your family", "Lovely weather today"]
    )
    assert result.model == "omni-moderation-latest-simulated"
    threat, small_talk = result.results
    assert threat.flagged
    assert threat.categories.violence
    assert not small_talk.flagged
    dumped = small_talk.model_dump(by_alias=True)
    for part in ("categories", "category_scores", "category_applied_input_types"):
        assert set(dumped[part]) == set(MODERATION_CATEGORIES)


@pytest.mark.asyncio
async def test_moderation_takes_a_single_string(client: AsyncOpenAI) -> None:
    """A single string input gets one result."""
    result = await client.moderations.create(input="hello there")
    assert len(result.results) == 1


@pytest.mark.asyncio
async def test_models_list_and_retrieve(client: AsyncOpenAI) -> None:
    """/v1/models lists nano and mini; an unknown id is a 404."""
    ids = [model.id async for model in client.models.list()]
    assert {"gpt-5.4-nano", "gpt-5.4-mini"} <= set(ids)
    nano = await client.models.retrieve("gpt-5.4-nano")
    assert nano.owned_by == "sluicegate-simulator"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-0")


@pytest.mark.asyncio
async def test_flex_tier_echoed_when_available(client: AsyncOpenAI) -> None:
    """service_tier=flex is served as flex; no tier is served as default."""
    flex = await client.chat.completions.create(
        model="gpt-5.4-nano", messages=[{"role": "user", "content": "hi"}], service_tier="flex"
    )
    plain = await client.chat.completions.create(
        model="gpt-5.4-nano", messages=[{"role": "user", "content": "hi"}]
    )
    assert (flex.service_tier, plain.service_tier) == ("flex", "default")


@pytest.mark.asyncio
async def test_flex_unavailable_is_a_429_the_client_can_fall_back_from() -> None:
    """With no flex capacity, flex requests get 429 resource_unavailable; default works."""
    settings = FAST.updated({"flex_available": False})
    async with running_simulator(settings) as url, sdk(url) as client:
        with pytest.raises(openai.RateLimitError) as raised:
            await client.chat.completions.create(
                model="gpt-5.4-nano",
                messages=[{"role": "user", "content": "hi"}],
                service_tier="flex",
            )
        assert raised.value.code == "resource_unavailable"
        fallback = await client.chat.completions.create(
            model="gpt-5.4-nano",
            messages=[{"role": "user", "content": "hi"}],
            service_tier="default",
        )
        assert fallback.service_tier == "default"


@pytest.mark.asyncio
async def test_stats_count_requests_statuses_and_tokens(sim_url: str) -> None:
    """/sim/stats counts requests by status, 429s, faults and tokens; /sim/reset zeroes it."""
    base = sim_url.removesuffix("/v1")
    async with sdk(sim_url) as client:
        await client.chat.completions.create(
            model="gpt-5.4-nano", messages=[{"role": "user", "content": "hi"}]
        )
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(
                model="gpt-5.4-nano",
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"x-sim-fault": "error_500"},
            )
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/sim/stats") as response:
            stats = await response.json()
        async with http.post(f"{base}/sim/reset") as response:
            after_reset = await response.json()
    assert stats["requests"] == 2
    assert stats["by_status"] == {"200": 1, "500": 1}
    assert stats["faults"] == {"error_500": 1}
    assert stats["prompt_tokens"] > 0
    assert stats["completion_tokens"] > 0
    assert after_reset["requests"] == 0


def test_cli_help() -> None:
    """`python -m stream simulate-nano --help` lists the flags."""
    done = subprocess.run(
        [sys.executable, "-m", "stream", "simulate-nano", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0
    for flag in ("--rpm", "--tpm", "--error-503", "--hang-s", "--no-flex-available", "--seed"):
        assert flag in done.stdout


def test_cli_rejects_a_bad_setting() -> None:
    """A fault rate above 1 stops the command with exit code 2, naming the setting."""
    done = subprocess.run(
        [sys.executable, "-m", "stream", "simulate-nano", "--refusal", "1.5"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusal" in done.stderr
