"""The dependency audit passes only when every package was checked and none is vulnerable."""

from __future__ import annotations

import venv
from pathlib import Path

import pytest

from ops.audit import NO_SOURCE, audit, verdict


def test_clean_when_every_dependency_was_checked() -> None:
    report = {"dependencies": [{"name": "a", "version": "1", "vulns": []}]}
    assert verdict(report, "pypi")[0] == 0


def test_a_known_vulnerability_fails_and_names_the_fix() -> None:
    vuln = {"id": "PYSEC-1", "fix_versions": ["1.1"]}
    report = {"dependencies": [{"name": "a", "version": "1", "vulns": [vuln]}]}
    code, lines = verdict(report, "pypi")
    assert code == 1
    assert "a 1: PYSEC-1 (fixed in 1.1)" in lines


def test_an_unchecked_dependency_is_not_a_clean_bill() -> None:
    """pip-audit exits 0 when its service cannot answer; the audit must not."""
    report = {"dependencies": [
        {"name": "a", "version": "1", "vulns": []},
        {"name": "b", "skip_reason": "Dependency not found on PyPI and could not be audited"},
    ]}  # fmt: skip
    code, lines = verdict(report, "pypi")
    assert code == 2
    assert "1 of 2 dependencies could not be checked" in lines[-1]
    assert verdict({"dependencies": []}, "osv")[0] == 2


def test_without_pip_audit_and_offline_it_says_so_plainly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An interpreter without pip-audit that cannot install it (here: no pip at all, as
    offline with no index): exit 2 with one plain line, no traceback."""
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    python = str(env / "bin" / "python")
    requirements = tmp_path / "constraints.txt"
    requirements.write_text("orjson==3.10.0\n")
    assert audit(requirements, "pypi", python=python) == 2
    err = capsys.readouterr().err
    assert NO_SOURCE in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_all_skipped_says_no_source_was_reachable() -> None:
    report = {"dependencies": [{"name": "b", "skip_reason": "Dependency not found on PyPI"}]}
    code, lines = verdict(report, "pypi")
    assert code == 2
    assert NO_SOURCE in lines[-1]
