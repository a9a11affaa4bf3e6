"""The ``sluicegate`` commands: the parser, ``run`` and ``config`` in ``commands``, the
others beside it (``dlq``, ``cost``, ``eval``, ``produce``/``tail``, ``demo``).

Kept empty of imports so that runtime modules can use ``stream.cli.command`` (how to
spell the command in a hint) without loading every command.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The ``sluicegate`` entry point."""
    from stream.cli.commands import main as run  # noqa: PLC0415 - see the module docstring

    return run(argv)
