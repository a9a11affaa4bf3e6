"""Faults against the real broker and the model simulator: nothing is lost, and each
fault is met the way it should be (RELIABILITY.md has the numbers of the last run).

Durations are real (a 30 s broker stop, a 60 s model outage); time bounds are only
"within seconds" promises, with room for a noisy machine; no throughput is asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import chaos, kafka_faults, model_faults
from tests.faults.lab import Lab
from tests.faults.scenarios import CHAOS

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def kafka_lab(kafka_bootstrap: str, tmp_path: Path) -> Lab:
    return Lab(kafka_bootstrap, tmp_path)


@pytest.fixture
def model_lab(kafka_bootstrap: str, tmp_path: Path, simulator: str) -> Lab:
    return Lab(kafka_bootstrap, tmp_path, simulator)


@pytest.mark.timeout(300)
def test_broker_restart(tmp_path: Path) -> None:
    """A broker stopped for 30 s under a running processor and restarted: processing
    resumes by itself, nothing is lost, and the processor never exits."""
    tally = kafka_faults.broker_restart(Lab("", tmp_path))
    assert tally.lost == 0, tally
    assert tally.out + tally.dead == tally.events_in
    assert tally.facts["committed_at_stop"] < tally.events_in, "the stop came too late"
    assert tally.facts["first_commit_after_restart_s"] < 60, tally.facts
    assert tally.dead == sum(1 for i in range(tally.events_in) if i % 97 == 0)


@pytest.mark.asyncio
@pytest.mark.timeout(300)
async def test_model_outage(model_lab: Lab) -> None:
    """A 60 s model outage: the breaker opens, consumption pauses, no event is
    dead-lettered, and processing recovers within seconds of the model's return."""
    tally = await model_faults.model_outage(model_lab)
    facts = tally.facts
    assert tally.lost == 0, tally
    assert tally.dead == 0, tally
    assert tally.out == tally.events_in
    assert facts["breaker_opened"] >= 1
    assert facts["paused_share_while_open"] >= 0.9, facts
    assert facts["consumed_while_open"] < facts["arrived_by_model_return"] // 4, facts
    # The breaker probes at least every model.breaker_max_cooldown_s (10 s).
    assert facts["first_answer_after_return_s"] < 15, facts
    assert facts["resumed_after_return_s"] < 20, facts


@pytest.mark.asyncio
@pytest.mark.timeout(240)
async def test_model_slowdown(model_lab: Lab) -> None:
    """A model ten times slower under a backlog: the events held in memory stay within
    their bound, partitions pause, the process does not grow, nothing is lost."""
    tally = await model_faults.model_slowdown(model_lab)
    facts = tally.facts
    assert tally.lost == 0, tally
    assert tally.dead == 0, tally
    bound = facts["max_in_flight"] + facts["max_poll_records"]
    for phase in ("before", "slowed", "after"):
        assert facts[phase]["peak_in_flight"] <= bound, facts
    assert facts["slowed"]["paused_share"] > 0.5, facts
    assert facts["rss_growth_slowed_mib"] < 50, facts
    assert facts["rss_growth_second_half_mib"] < 25, facts


@pytest.mark.asyncio
@pytest.mark.timeout(240)
async def test_rate_limit_storms(model_lab: Lab) -> None:
    """Three storms of a lowered server limit (requests, tokens, both): every event
    enriched, none dead-lettered, none lost; the client follows the server's limit down
    during each storm and back up after it (it once stayed at the storm's limit for good
    and took minutes for a backlog of seconds)."""
    tally = await model_faults.rate_limit_storms(model_lab)
    assert tally.lost == 0, tally
    assert tally.dead == 0, tally
    assert tally.out == tally.events_in
    for name, limits in model_faults.STORMS:
        seen = tally.facts["client_limits"][name]  # raised again: run.until checked it
        for kind in ("rpm", "tpm"):
            if kind in limits:
                assert seen[f"storm_{kind}"] <= limits[kind], (name, tally.facts)


@pytest.mark.timeout(240)
def test_eos_kill(kafka_lab: Lab) -> None:
    """SIGKILLed three times while an exactly-once transaction holds records: a
    read_committed reader sees every input exactly once, and the records of a killed
    open transaction never."""
    tally = kafka_faults.eos_kill(kafka_lab)
    facts = tally.facts
    assert tally.lost == 0, tally
    assert tally.duplicated == 0, tally
    assert tally.out + tally.dead == tally.events_in
    assert min(facts["records_pending_at_each_kill"]) > 0, facts
    # A kill can also land while the commit is already on its way (its records then
    # commit); most hit the transaction open, and their records must be aborted.
    assert facts["kills_inside_open_transaction"] >= 1, facts
    assert max(facts["committed_inputs_after_each_kill"]) < tally.events_in, facts


@pytest.mark.timeout(240)
def test_replicas_one_host(kafka_lab: Lab) -> None:
    """Two exactly-once replicas on one host with the default transactional id: neither
    fences the other (they once shared ``<group>-<hostname>``)."""
    tally = kafka_faults.replicas_one_host(kafka_lab)
    assert tally.facts["fenced"] == 0, tally
    assert tally.lost == 0, tally
    assert tally.duplicated == 0, tally
    assert tally.out + tally.dead == tally.events_in, tally  # some inputs are bad on purpose


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("ordering", "kind", "eos"),
    [
        pytest.param(*c, marks=[] if i < 2 else [pytest.mark.reliability])
        for i, c in enumerate(CHAOS)
    ],
    ids=[f"chaos-{o}-{k}{'-eos' if e else ''}" for o, k, e in CHAOS],
)
def test_backlog_chaos(tmp_path: Path, ordering: str, kind: str, eos: bool) -> None:
    """A backlog worked off through a member joining and leaving while partitions are
    paused, two SIGKILLs and a broker restart: nothing lost, and with exactly-once
    nothing twice to read_committed readers."""
    tally = chaos.backlog_chaos(Lab("", tmp_path), ordering=ordering, model=kind == "model",
                                eos=eos)  # fmt: skip
    assert tally.lost == 0, tally
    assert tally.out + tally.dead == tally.events_in, tally
    if eos:
        assert tally.duplicated == 0, tally
