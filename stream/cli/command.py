"""How to spell the ``sluicegate`` command in a hint, so that it runs when pasted.

After ``make install`` the command lives in ``.venv/bin/`` and is not on ``PATH`` until
the virtualenv is activated; a hint that says only ``sluicegate`` would fail there.
"""

from __future__ import annotations

import os
import shutil
import sys
from functools import cache
from pathlib import Path


@cache
def sluicegate_command() -> str:
    """``sluicegate`` if that is on ``PATH`` and is this installation, else the path of
    this installation's script (relative to the working directory when it is below it),
    else ``python -m stream`` with this interpreter."""
    script = Path(sys.executable).parent / "sluicegate"
    on_path = shutil.which("sluicegate")
    if on_path is not None and (not script.exists() or Path(on_path).resolve() == script.resolve()):
        return "sluicegate"
    if script.exists():
        try:
            return str(script.relative_to(Path.cwd()))
        except ValueError:
            return str(script)
    return f"{os.path.relpath(sys.executable) if sys.executable else 'python'} -m stream"
