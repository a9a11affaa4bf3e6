"""Every entry point imports on its own, first thing in a fresh interpreter.

The packages import each other (the DLQ cap names the ``sluicegate`` command in its
hint; the command line imports the DLQ), so which module is imported first decides
whether a cycle breaks: the processor imported by a library user or a benchmark must
not depend on the command line having been imported before it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

ENTRY_POINTS = ("stream.runtime.processor", "stream.dlq", "stream.cli", "stream.app")


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


HEAVY = ("sklearn", "vaderSentiment", "drain3", "profanity_check", "numpy", "scipy")
TASK_ONLY = """
import sys
from stream.config import load
from stream.model.service import ModelService
from stream.routes import build_routes
from stream.runtime.processor import Processor

settings = load("examples/tasks.toml", model={"base_url": "http://127.0.0.1:9/v1", "api_key": "k"})
for route in settings.routes:  # the learned tier needs scikit-learn: a route without it
    route.options["local_tier"] = False
service = ModelService(settings)
handlers = {r.settings.name: r.handler for r in build_routes(settings, model=service)}
Processor(settings, handlers, model=service)
print(" ".join(m for m in HEAVY if m in sys.modules))
"""


def test_a_task_route_alone_imports_no_local_model_library() -> None:
    """The local tier's libraries (scikit-learn for the learned tier and under
    profanity-check, vaderSentiment, Drain3) cost start-up time and memory: only a route
    that uses them imports them (a task route learns unless its local tier is off)."""
    done = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{TASK_ONLY}"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
