"""The simulator's log teacher: Loghub templates looked up by message, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.errors import ConfigError
from stream.simulator import oracle
from stream.simulator.log_teacher import LogTeacher
from stream.simulator.settings import SimulatorSettings
from stream.simulator.state import SimState

PAIRS = [
    ("Accepted password for root from 1.2.3.4 port 22 ssh2",
     "Accepted password for <*> from <*> port <*> ssh2"),
    ("REPORT : 7007 5002 150089 240", "REPORT : <*> <*> <*> <*>"),
    ("onStandStepChanged 3579", "onStandStepChanged <*>"),
]  # fmt: skip


def test_messages_are_found_as_written_or_with_header_tokens_more_or_less() -> None:
    """Blanks do not matter; a header split that kept or dropped a token still finds it."""
    teacher = LogTeacher(PAIRS)
    taught = teacher.teach("Accepted  password for root from 1.2.3.4 port 22 ssh2")
    assert taught is not None
    assert (taught.template, taught.values) == (PAIRS[0][1], ("root", "1.2.3.4", "22"))
    assert teacher.template("sshd: onStandStepChanged 3579") == "onStandStepChanged <*>"
    assert teacher.template("for root from 1.2.3.4 port 22 ssh2") == PAIRS[0][1]
    assert teacher.template("never seen") is None


def test_redacted_values_still_find_their_message() -> None:
    """The handler's redactor turned values into ``[CARD]``: the placeholder is a wildcard."""
    assert LogTeacher(PAIRS).template("REPORT : [CARD]") == "REPORT : <*> <*> <*> <*>"


def test_the_oracle_answers_from_the_teacher_only_when_one_is_set() -> None:
    """Without a teacher the heuristic template stands; with one, the true template."""
    line = "onStandStepChanged 3579"
    token = oracle.LOG_TEACHER.set(LogTeacher(PAIRS))
    try:
        taught = oracle.log_line(line)
    finally:
        oracle.LOG_TEACHER.reset(token)
    assert (taught.template, taught.parameters) == (
        "onStandStepChanged <*>",
        (("onstandstepchanged", "3579"),),
    )
    assert oracle.log_line(line) == oracle.heuristic_log_line(line)


def test_files_that_are_not_loghub_csv_are_a_clear_error(tmp_path: Path) -> None:
    """Wrong columns name the file and what is needed; a missing path fails at start-up."""
    bad = tmp_path / "x_structured.csv"
    bad.write_text("text,label\nhello,positive\n")
    with pytest.raises(ValueError, match="needs Content and EventTemplate"):
        LogTeacher.load(bad)
    with pytest.raises(ValueError, match=r"no \*structured\*\.csv"):
        LogTeacher.load(tmp_path / "empty")
    with pytest.raises(ConfigError, match="log_teacher"):
        SimState(SimulatorSettings(log_teacher=str(bad)))
