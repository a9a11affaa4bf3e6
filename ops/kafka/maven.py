"""Maven, quietly: one progress line every few seconds instead of ~880 lines of logs.

Maven's own output (with colour codes that ``-Dstyle.color=never`` does not always
remove) goes to a log file; the terminal sees how much has arrived so far, and, if
Maven fails, the last lines of that log with the escape codes stripped.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

QUIET_FLAGS = ("-B", "-q", "--no-transfer-progress", "-Dstyle.color=never")
PROGRESS_EVERY_S = 5.0
TAIL_LINES = 25
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def _size_mb(folders: Sequence[Path]) -> float:
    total = 0
    for folder in folders:
        if folder.exists():
            total += sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return total / 1e6


def run_quietly(
    command: Sequence[str], log: Path, watch: Sequence[Path], say: object = None
) -> int:
    """Run Maven ``command`` with ``QUIET_FLAGS``, its output into ``log``; print the
    megabytes in ``watch`` every few seconds; on failure print the log's tail. Returns
    Maven's exit code."""
    write = say if callable(say) else (lambda m: print(m, file=sys.stderr, flush=True))
    done = threading.Event()

    def progress() -> None:
        while not done.wait(PROGRESS_EVERY_S):
            write(f"  ... {_size_mb(watch):.0f} MB so far")

    ticker = threading.Thread(target=progress, daemon=True)
    with log.open("w") as out:
        ticker.start()
        try:
            code = subprocess.run(
                [command[0], *QUIET_FLAGS, *command[1:]],
                check=False, stdout=out, stderr=subprocess.STDOUT,
            ).returncode  # fmt: skip
        finally:
            done.set()
            ticker.join()
    if code != 0:
        lines = strip_ansi(log.read_text(errors="replace")).splitlines()[-TAIL_LINES:]
        print("\n".join(lines), file=sys.stderr)
    return code
