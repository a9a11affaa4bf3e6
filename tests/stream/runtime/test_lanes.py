"""Lanes keep per-key and per-partition order and never run one lane twice at once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from schemas.records import SourceRecord
from stream.config import Ordering
from stream.runtime.lanes import Lanes


def rec(offset: int, key: bytes | None) -> SourceRecord:
    return SourceRecord("t", 0, offset, key, b"{}")


def simulate(ordering: Ordering, keys: list[bytes | None], picks: list[int]) -> list[int]:
    """Admit all records, then finish running ones in an arbitrary order; return the
    order in which records started, checking the one-at-a-time rule on the way."""
    lanes = Lanes(ordering)
    running: list[SourceRecord] = []
    started: list[int] = []
    for offset, key in enumerate(keys):
        r = rec(offset, key)
        if lanes.admit(r):
            running.append(r)
            started.append(offset)
    i = 0
    while running:
        r = running.pop(picks[i % len(picks)] % len(running) if picks else 0)
        i += 1
        nxt = lanes.finished(r)
        if nxt is not None:
            running.append(nxt)
            started.append(nxt.offset)
        if ordering == "key":
            live = [x.key for x in running if x.key is not None]
            assert len(live) == len(set(live)), "two events of one key run at once"
        if ordering == "partition":
            assert len(running) <= 1
    assert lanes.waiting == 0
    return started


keys_st = st.lists(st.sampled_from([b"a", b"b", b"c", None]), max_size=40)
picks_st = st.lists(st.integers(0, 100), min_size=1, max_size=20)


@given(keys_st, picks_st)
def test_key_mode_keeps_per_key_order(keys: list[bytes | None], picks: list[int]) -> None:
    """Every record starts exactly once and the records of one key start in offset order."""
    started = simulate("key", keys, picks)
    assert sorted(started) == list(range(len(keys)))
    for key in (b"a", b"b", b"c"):
        of_key = [o for o in started if keys[o] == key]
        assert of_key == sorted(of_key)


@given(keys_st, picks_st)
def test_partition_mode_is_sequential(keys: list[bytes | None], picks: list[int]) -> None:
    """Partition mode starts records strictly in offset order."""
    assert simulate("partition", keys, picks) == list(range(len(keys)))


@given(keys_st, picks_st)
def test_unordered_starts_everything_at_once(keys: list[bytes | None], picks: list[int]) -> None:
    """Unordered mode never holds a record back."""
    lanes = Lanes("unordered")
    assert all(lanes.admit(rec(o, k)) for o, k in enumerate(keys))
