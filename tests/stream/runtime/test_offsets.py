"""PartitionOffsets commits exactly the contiguous done prefix, whatever the order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.runtime.offsets import PartitionOffsets


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Increasing offsets with gaps, and a random order in which some of them finish."""
    gaps = draw(st.lists(st.integers(1, 3), min_size=1, max_size=60))
    start = draw(st.integers(0, 10_000))
    offsets = [start + sum(gaps[: i + 1]) for i in range(len(gaps))]
    finished = draw(st.permutations(offsets))
    cut = draw(st.integers(0, len(finished)))
    return offsets, list(finished[:cut])


@given(schedules())
def test_committable_is_the_contiguous_done_prefix(schedule: tuple[list[int], list[int]]) -> None:
    """After any completion order, committable() is the first unfinished offset (or one
    past the last started), so no unfinished offset is ever committed."""
    offsets, finished = schedule
    tracker = PartitionOffsets()
    for offset in offsets:
        tracker.started(offset)
    done: set[int] = set()
    for offset in finished:
        tracker.done(offset)
        done.add(offset)
        unfinished = [o for o in offsets if o not in done]
        expected = unfinished[0] if unfinished else offsets[-1] + 1
        assert tracker.committable() == expected
        assert all(o in done for o in offsets if o < expected)
        assert tracker.in_flight == len(unfinished)


@given(schedules())
def test_committable_never_moves_backwards(schedule: tuple[list[int], list[int]]) -> None:
    """Interleaving starts and completions, the committable offset only grows."""
    offsets, finished = schedule
    tracker = PartitionOffsets()
    last = -1
    started: set[int] = set()
    for offset in offsets:
        tracker.started(offset)
        started.add(offset)
        for f in [f for f in finished if f in started]:
            tracker.done(f)
            finished.remove(f)
            committable = tracker.committable()
            assert committable is not None
            assert committable >= last
            last = committable


def test_seen_marks_redeliveries() -> None:
    """Offsets at or below the highest started one are redeliveries."""
    tracker = PartitionOffsets()
    assert not tracker.seen(0)
    tracker.started(10)
    assert tracker.seen(3)
    assert tracker.seen(10)
    assert not tracker.seen(11)


def test_nothing_started() -> None:
    """A new tracker has nothing to commit."""
    assert PartitionOffsets().committable() is None


def test_first_offset_is_committable_before_it_is_done() -> None:
    """Committing the first started offset is a no-op position, never a skip."""
    tracker = PartitionOffsets()
    tracker.started(42)
    assert tracker.committable() == 42


def test_misuse_raises() -> None:
    """Completing an unknown or finished offset, or starting out of order, is a bug."""
    tracker = PartitionOffsets()
    tracker.started(5)
    with pytest.raises(ValueError, match="not in flight"):
        tracker.done(6)
    with pytest.raises(ValueError, match="started after"):
        tracker.started(4)
    tracker.done(5)
    with pytest.raises(ValueError, match="not in flight"):
        tracker.done(5)
