"""Every fault scenario by name: what it needs, how to run it, how to reproduce its row.

A scenario runs one fault against a real broker (and the model simulator, for faults of
the model) and returns its tallies: events in, out, dead-lettered, lost (by source
offset; must be 0), duplicated, and what else it measured. ``test_faults.py`` asserts on
them; ``reliability.py`` writes them into RELIABILITY.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

from tests.faults import bad_input, chaos, kafka_faults, model_faults
from tests.faults.lab import Lab, Tally

# broker: a broker of its own (the scenario starts it); kafka: the shared broker;
# model: the shared broker and a fresh simulator.
Needs = Literal["broker", "kafka", "model"]


@dataclass(frozen=True)
class Scenario:
    name: str  # the runner's --only value
    needs: Needs
    cases: int  # how many times the fault is injected (bad input: counted per class)
    test: str  # the pytest command line that asserts on it
    run_sync: Callable[[Lab], Tally] | None = None
    run_async: Callable[[Lab], Awaitable[Tally | list[Tally]]] | None = None

    def commands(self) -> list[str]:
        return [self.test, f"python -m tests.faults.reliability --only {self.name}"]


async def _bad_input(lab: Lab) -> list[Tally]:
    return await bad_input.bad_input(lab)


def _faults(test: str) -> str:
    return f"python -m pytest tests/faults/test_faults.py -k {test}"


# Backlog chaos in every ordering, with an instant and a model-backed handler; the
# first two also run in `make test`, all of them in `make reliability`.
CHAOS = (
    ("partition", "instant", False),
    ("key", "model", True),
    ("unordered", "instant", True),
    ("key", "instant", False),
    ("partition", "model", False),
    ("unordered", "model", False),
)
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("broker-restart", "broker", 1, _faults("broker_restart"),
             run_sync=kafka_faults.broker_restart),
    Scenario("model-outage", "model", 1, _faults("model_outage"),
             run_async=model_faults.model_outage),
    Scenario("model-slowdown", "model", 1, _faults("model_slowdown"),
             run_async=model_faults.model_slowdown),
    Scenario("rate-limit-storms", "model", len(model_faults.STORMS), _faults("rate_limit_storms"),
             run_async=model_faults.rate_limit_storms),
    Scenario("model-answer-faults", "model", 1,
             "python -m pytest tests/stream/test_model_runtime.py -k faults_end_retried",
             run_async=model_faults.model_answer_faults),
    Scenario("sigkill-loop", "kafka", 6,
             "python -m pytest tests/stream/test_crash.py -k at-least-once",
             run_sync=kafka_faults.alo_kill),
    Scenario("eos-kill", "kafka", 3, _faults("eos_kill"), run_sync=kafka_faults.eos_kill),
    Scenario("replicas-one-host", "kafka", 1, _faults("replicas_one_host"),
             run_sync=kafka_faults.replicas_one_host),
    *(
        Scenario(f"chaos-{ordering}-{kind}{'-eos' if eos else ''}", "broker", 4,
                 _faults(f"chaos and {ordering} and {kind}"),
                 run_sync=partial(chaos.backlog_chaos, ordering=ordering,
                                  model=kind == "model", eos=eos))
        for ordering, kind, eos in CHAOS
    ),
    Scenario("bad-input", "model", 0,
             "python -m pytest tests/handlers/test_bad_input.py -k runtime",
             run_async=_bad_input),
)  # fmt: skip
BY_NAME = {s.name: s for s in SCENARIOS}
