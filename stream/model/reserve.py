"""How many completion tokens a request reserves (``max_completion_tokens``).

The provider counts the whole reservation against the TPM limit while the request runs,
used or not: 1,024 reserved for answers of ~350 tokens lost about a tenth of the ceiling.
So the reservation is sized from the answers seen: a high percentile of the completion
tokens of recent requests of the same task and batch size, with a margin and a floor,
never above the configured ``max_completion_tokens``. Until enough answers are seen (and
again after an answer was cut off) the configured maximum is reserved; a cut-off answer
is still handled as before (its items are asked again alone).
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Hashable

QUANTILE = 0.99
MARGIN = 1.25  # over the percentile: answers vary from call to call
FLOOR = 64  # never reserve less: a short answer stays cheap, a cut-off one costs a retry
MIN_SAMPLES = 20
WINDOW = 200
# What a batch answer adds around its items ({"results": [...]}).
ENVELOPE_TOKENS = 8


def _percentile(samples: deque[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(QUANTILE * len(ordered)) - 1)]


class CompletionReserve:
    """Per task: the completion tokens of recent answers, by batch size and per item."""

    def __init__(self, ceiling: int, *, floor: int = FLOOR) -> None:
        self.ceiling = ceiling
        self.floor = min(floor, ceiling)
        self._by_size: dict[tuple[Hashable, int], deque[float]] = defaultdict(
            lambda: deque(maxlen=WINDOW)
        )
        self._per_item: dict[Hashable, deque[float]] = defaultdict(lambda: deque(maxlen=WINDOW))

    def limit(self, task: Hashable, events: int) -> int:
        """``max_completion_tokens`` for a request of ``events`` events of ``task``."""
        same = self._by_size.get((task, events))
        if same is not None and len(same) >= MIN_SAMPLES:
            want = _percentile(same) * MARGIN
        else:
            items = self._per_item.get(task)
            if items is None or len(items) < MIN_SAMPLES:
                return self.ceiling
            # Other batch sizes seen: scale their per-item size (an upper bound, as the
            # envelope is counted in every item of the batches it came from).
            want = _percentile(items) * events * MARGIN + ENVELOPE_TOKENS
        return max(self.floor, min(self.ceiling, math.ceil(want)))

    def observe(self, task: Hashable, events: int, completion_tokens: int) -> None:
        """A whole answer (not cut off) of a request of ``events`` events."""
        self._by_size[(task, events)].append(completion_tokens)
        self._per_item[task].append(completion_tokens / max(1, events))

    def cut_off(self, task: Hashable) -> None:
        """An answer of ``task`` hit its reservation: forget what was learned, so the
        configured maximum is reserved until the answers are known again."""
        self._per_item.pop(task, None)
        for key in [k for k in self._by_size if k[0] == task]:
            del self._by_size[key]
