"""Audit the pinned dependencies (constraints.txt) for known vulnerabilities.

Runs pip-audit against PyPI's vulnerability data (or OSV's with ``--service osv``) and
passes only when every dependency was actually checked and none has a known
vulnerability. pip-audit itself exits 0 when its service cannot answer for a package
(it reports the package as skipped); here a skipped package fails the audit, so an
unreachable service never reads as a clean bill of health.

    python -m ops.audit [--service pypi|osv] [--requirements constraints.txt]

Exit codes: 0 clean, 1 vulnerabilities found, 2 the audit could not be done.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PIP_AUDIT = "pip-audit==2.10.1"


NO_SOURCE = "no vulnerability source was reachable, nothing was checked"


def _ensure_pip_audit(python: str) -> str | None:
    """None once pip-audit runs under ``python``; else why it could not be installed."""
    probe = subprocess.run([python, "-m", "pip_audit", "--version"], capture_output=True,
                           check=False)  # fmt: skip
    if probe.returncode == 0:
        return None
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--progress-bar", "off", PIP_AUDIT],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if install.returncode == 0:
        return None
    return _last_line(install.stderr)


def _last_line(text: str) -> str:
    return (text.strip().splitlines() or ["no output"])[-1].strip()


def audit(requirements: Path, service: str, python: str = sys.executable) -> int:
    why = _ensure_pip_audit(python)
    if why is not None:
        print(f"audit: {NO_SOURCE}: pip-audit ({PIP_AUDIT}) is not installed and could not "
              f"be installed ({why}). Run `make audit` where the package index answers.",
              file=sys.stderr)  # fmt: skip
        return 2
    run = subprocess.run(
        [
            python, "-m", "pip_audit", "--requirement", str(requirements),
            "--no-deps", "--disable-pip", "--progress-spinner", "off",
            "--vulnerability-service", service, "--format", "json",
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        print(f"audit: {NO_SOURCE}: pip-audit could not query {service!r} "
              f"({_last_line(run.stderr)}). Run `make audit` where it answers "
              "(or try --service osv / pypi).", file=sys.stderr)  # fmt: skip
        return 2
    code, lines = verdict(report, service)
    print("\n".join(lines), file=sys.stderr if code == 2 else sys.stdout)
    return code


def verdict(report: dict[str, Any], service: str) -> tuple[int, list[str]]:
    """The exit code and the lines to print for pip-audit's JSON ``report``."""
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    vulnerable = [d for d in deps if d.get("vulns")]
    lines = []
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
            lines.append(f"{dep['name']} {dep.get('version')}: {vuln['id']} (fixed in {fixes})")
    if vulnerable:
        lines.append(
            f"audit: {len(vulnerable)} of {len(deps)} dependencies have known vulnerabilities"
        )
        return 1, lines
    if skipped or not deps:
        reason = skipped[0]["skip_reason"] if skipped else "pip-audit listed no dependency"
        prefix = f"audit: {NO_SOURCE}: " if len(skipped) == len(deps) else "audit: "
        lines.append(
            f"{prefix}{len(skipped)} of {len(deps)} dependencies could not be checked, e.g. "
            f"{reason!r}. The vulnerability service ({service}) does not answer from this "
            "machine; run `make audit` where it does (or --service osv)."
        )
        return 2, lines
    return 0, [f"audit: {len(deps)} dependencies checked against {service}, no known vulnerability"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.audit", description=__doc__.split("\n")[0])
    parser.add_argument("--service", choices=("pypi", "osv"), default="pypi")
    parser.add_argument("--requirements", type=Path, default=REPO / "constraints.txt")
    args = parser.parse_args(argv)
    return audit(args.requirements, args.service)


if __name__ == "__main__":
    sys.exit(main())
