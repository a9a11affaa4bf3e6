"""`sluicegate cost estimate`: dollars split as billed, monthly volumes, and a default
instruction size under which batching is cheaper than one call per event."""

from __future__ import annotations

import pytest

from stream.cli import commands as cli


def rows(out: str) -> dict[str, list[str]]:
    """Label -> the numbers of its line."""
    found = {}
    for line in out.splitlines()[2:]:
        label, numbers = line[:40].strip(), line[40:].split()
        found[label] = numbers
    return found


def test_input_and_output_dollars_are_apart(capsys: pytest.CaptureFixture[str]) -> None:
    """The seed's worked example: 300 in, 20 out, 100,000/day: $6.00 + $2.50 = $8.50."""
    assert cli.main(["cost", "estimate", "--per-day", "100000", "--content-tokens", "300",
                     "--output-tokens", "20", "--static-tokens", "0"]) == cli.EXIT_OK  # fmt: skip
    out = capsys.readouterr().out
    assert "input $" in out
    assert "output $" in out
    assert rows(out)["one call per event"][-3:] == ["6.00", "2.50", "8.50"]


def test_per_month(capsys: pytest.CaptureFixture[str]) -> None:
    """--per-month N prices N/30 a day and adds the month's dollars."""
    assert cli.main(["cost", "estimate", "--per-month", "3000000", "--content-tokens", "300",
                     "--output-tokens", "20", "--static-tokens", "0"]) == cli.EXIT_OK  # fmt: skip
    out = capsys.readouterr().out
    assert "100,000 events/day" in out
    assert rows(out)["one call per event"][-2:] == ["8.50", "255.00"]


def test_default_instructions_make_batching_cheaper(capsys: pytest.CaptureFixture[str]) -> None:
    """By default a request carries real instructions (the sentiment handler's), so
    batching them costs less than sending them with every event."""
    assert cli.main(["cost", "estimate", "--per-day", "100000", "--content-tokens", "300",
                     "--output-tokens", "20"]) == cli.EXIT_OK  # fmt: skip
    out = capsys.readouterr().out
    static = int(out.splitlines()[0].split(" content + ")[1].split()[0])
    assert static > 1000
    found = rows(out)
    batched = next(v for k, v in found.items() if k.startswith("batches of"))
    assert float(batched[-1]) < float(found["one call per event"][-1])


def test_readme_worked_example_is_what_the_command_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's cost table is this command's output with its defaults."""
    from pathlib import Path  # noqa: PLC0415

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### What will it cost?") :]
    command = "sluicegate cost estimate --per-day 100000 --content-tokens 300 --output-tokens 20"
    assert f"`{command}`" in section
    assert cli.main(command.split()[1:]) == cli.EXIT_OK
    found = rows(capsys.readouterr().out)
    for label in ("one call per event", "batches of 16, cache 0%"):
        requests, *_, input_usd, output_usd, per_day = found[label]
        assert f"| {label} | {requests} | {input_usd} | {output_usd} | {per_day} |" in section
