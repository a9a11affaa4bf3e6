"""An OpenAI-compatible simulator of ``gpt-5.4-nano``: the stand-in for the real API in
tests, benchmarks and the demo (``sluicegate simulate-nano``).

It answers Chat Completions (structured outputs that validate against the request's own
schema, micro-batches matched by event id), moderations and the model list, with the
provider's usage numbers, rate-limit headers and 429s, latency distribution, prefix
cache and injected faults; every answer's ``model`` ends in ``-simulated``.

This package imports nothing heavy: ``from stream.simulator.server import
running_simulator, make_app`` for the server, ``stream.simulator.settings`` for its
settings (the CLI's ``--help`` must stay fast).
"""
