"""``python -m stream`` is the same CLI as ``sluicegate``."""

from __future__ import annotations

import sys

from stream.cli.commands import main

sys.exit(main())
