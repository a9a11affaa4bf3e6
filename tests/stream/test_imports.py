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
