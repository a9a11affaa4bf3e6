"""Templates and the template store: linear fitting, Drain3 clusters, one call per template."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence

import pytest

from handlers.logs.masks import MASK_SETS, instructions
from handlers.logs.store import Match, Miss, StoreConfig, TemplateStore
from handlers.logs.templates import (
    Template,
    error_signature,
    fitted,
    normalize_template,
    slot_names,
    stable_id,
)

# -- templates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "line", "values"),
    [
        ("Failed password for <*> from <*> port <*> ssh2",
         "Failed password for root from 1.2.3.4 port 22 ssh2", ("root", "1.2.3.4", "22")),
        ("uid=<*> tty=<*>", "uid= tty=ssh", ("", "ssh")),  # an empty value is a value
        ("connection from <*> (<*>) at <*>", "connection from 1.2.3.4 () at Sun",
         ("1.2.3.4", "", "Sun")),
        ("<*>:<*>", "a:b:c", ("a", "b:c")),
        ("no slots here", "no slots here", ()),
        ("Failed password for <*> from <*>", "Failed password for invalid user x from h", None),
        ("a <*> b", "a b", None),  # the pieces may not overlap
        ("ends <*>", "starts 1", None),
    ],
)  # fmt: skip
def test_narrow_templates_fit_token_values(
    template: str, line: str, values: tuple[str, ...] | None
) -> None:
    """A narrow slot holds no blank, so a template does not swallow other events' words."""
    assert Template.parse(template).match(line) == values


def test_wide_templates_span_tokens_and_fitted_picks_the_narrowest_reading() -> None:
    """``fitted`` reads a template narrow when the line allows, else wide."""
    narrow = fitted("took <*> total", "took 5 total")
    assert narrow is not None
    assert (narrow[0].wide, narrow[1]) == (False, ("5",))
    wide = fitted("took <*> total", "took 5 ms total")
    assert wide is not None
    assert (wide[0].wide, wide[1]) == (True, ("5 ms",))
    assert fitted("took <*> total", "gave 5 ms total") is None


def test_fitting_is_linear_on_adversarial_lines() -> None:
    """Many slots against a long line that almost fits: no backtracking blow-up (a
    ``(.*?)`` regex of the same template takes seconds here)."""
    template = Template.parse(" ".join(["a <*>"] * 40) + " z", wide=True)
    line = "a " * 50_000 + "y"
    assert template.match(line) is None
    assert template.match(" ".join(["a 1"] * 40) + " z") == ("1",) * 40


def test_normalize_ids_and_names() -> None:
    """Spellings of a slot are one; ids are stable hashes; slots get names."""
    assert normalize_template("a  < * >   b {} <*><*>") == "a <*> b <*> <*>"
    assert re.fullmatch(r"T[0-9a-f]{8}", stable_id("T", "x <*>"))
    signature = error_signature("Failed password for <*>")
    assert re.fullmatch(r"E[0-9a-f]{8}", signature)
    assert signature == error_signature("Failed  password for <*>")
    assert slot_names("uid=<*> from <*> port <*> <*>") == ("uid", "from", "port", "p4")


def test_mask_sets_are_drain3_instructions() -> None:
    """Every mask set builds; an unknown one is a clear error."""
    for name, masks in MASK_SETS.items():
        assert len(instructions(name)) == len(masks)
    with pytest.raises(ValueError, match="accepted: general"):
        instructions("nope")


# -- the store ------------------------------------------------------------------------------


def _parse(store: TemplateStore, line: str, model: Callable[[str], str | None]) -> Match:
    found = store.lookup(line)
    if isinstance(found, Miss):
        return store.learn(line, model(line), found.cluster)
    return found


def _digits(line: str) -> str:
    return " ".join("<*>" if any(c.isdigit() for c in t) else t for t in line.split())


def test_one_model_call_per_template_then_the_store_answers() -> None:
    """The first line of a kind is a miss; the next ones fit the learned template."""
    store = TemplateStore()
    first = store.lookup("Receiving block blk_1 src: /10.0.0.1:50010")
    assert isinstance(first, Miss)
    learned = store.learn(
        "Receiving block blk_1 src: /10.0.0.1:50010", "Receiving block <*> src: /<*>", first.cluster
    )
    assert (learned.source, learned.params) == ("model", ("blk_1", "10.0.0.1:50010"))
    again = store.lookup("Receiving block blk_99 src: /10.0.0.7:50010")
    assert isinstance(again, Match)
    assert (again.source, again.template_id) == ("store", learned.template_id)
    assert again.params == ("blk_99", "10.0.0.7:50010")
    assert len(store) == 1


def test_a_line_of_a_merged_cluster_that_fits_no_template_is_asked_about() -> None:
    """Drain merges 'opened'/'closed' lines (one word of five differs); the model's
    template of the first does not fit the second, so the second is a new event."""
    store = TemplateStore()
    opened = _parse(store, "session opened for user root", lambda _: "session opened for user <*>")
    found = store.lookup("session closed for user root")
    assert isinstance(found, Miss)
    closed = store.learn(
        "session closed for user root", "session closed for user <*>", found.cluster
    )
    assert closed.template_id != opened.template_id
    assert isinstance(store.lookup("session opened for user bob"), Match)
    assert isinstance(store.lookup("session closed for user bob"), Match)


def test_a_template_learned_in_one_cluster_answers_another_without_a_call() -> None:
    """Lines Drain puts in two clusters (different first tokens after masking) but one
    template fits share the template and its id, at one model call."""
    store = TemplateStore()
    template = "<*> open through proxy <*>"
    first = _parse(store, "chrome.exe open through proxy p.example.com:5070", lambda _: template)
    other = store.lookup("firefox.exe open through proxy p.example.com:5070")
    assert isinstance(other, Match)
    assert (other.template_id, other.source) == (first.template_id, "store")


@pytest.mark.parametrize("answer", [None, "a template that does not fit the line"])
def test_unusable_model_answers_fall_back_to_drains_template(answer: str | None) -> None:
    """No answer, or one that does not fit: Drain's template stands in, and fits."""
    store = TemplateStore()
    found = store.lookup("worker 12 started in 5 ms")
    assert isinstance(found, Miss)
    local = store.learn("worker 12 started in 5 ms", answer, found.cluster)
    assert local.source == "local"
    assert local.template == "worker <*> started in <*> ms"
    assert local.params == ("12", "5")


def test_a_long_line_is_capped_and_still_answered() -> None:
    """Only the first ``max_tokens`` tokens are examined; the rest is one more value."""
    store = TemplateStore(StoreConfig(max_tokens=8))
    words = " ".join(f"w{i}" for i in range(10_000))
    line = "dump of table 7 follows: " + words
    found = store.lookup(line)
    assert isinstance(found, Miss)
    head, tail = store.split(line)
    assert len(head.split()) == 8
    assert tail.endswith("w9999")
    learned = store.learn(line, "dump of table <*> follows: <*> <*> <*>", found.cluster)
    assert learned.template == "dump of table <*> follows: <*> <*> <*> <*>"
    assert learned.params[-1] == tail
    again = store.lookup(line.replace("table 7", "table 8"))
    assert isinstance(again, Match)
    assert again.template_id == learned.template_id


def test_memory_is_bounded_by_max_clusters() -> None:
    """Clusters past ``max_clusters`` are forgotten, least recently used first."""
    store = TemplateStore(StoreConfig(max_clusters=20))
    for i in range(200):
        line = f"event{i} kind{i} happened"
        _parse(store, line, lambda text: text)
    assert len(store._clusters) <= 20
    assert len(store) <= 20 * StoreConfig().max_templates_per_cluster


def _ga(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    groups_p: dict[Hashable, set[int]] = defaultdict(set)
    groups_t: dict[Hashable, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        groups_p[p].add(i)
        groups_t[t].add(i)
    return sum(groups_p[p] == groups_t[t] for p, t in zip(predicted, truth, strict=True)) / len(
        truth
    )


EVENTS = (
    "Accepted password for <*> from <*> port <*> ssh2",
    "Failed password for <*> from <*> port <*> ssh2",
    "Failed password for invalid user <*> from <*> port <*> ssh2",
    "Received disconnect from <*>: <*>: Bye Bye [preauth]",
    "session opened for user <*> by (uid=<*>)",
    "session closed for user <*>",
    "PacketResponder <*> for block <*> terminating",
    "Verification succeeded for <*>",
    "Starting task <*> in stage <*> (TID <*>, <*>, partition <*>,PROCESS_LOCAL, <*> bytes)",
    "onStandStepChanged <*>",
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_taught_stream_groups_exactly_with_one_call_per_template(seed: int) -> None:
    """With the true template as the model's answer, a shuffled stream of generated
    lines groups exactly and costs one call per event type."""
    rng = random.Random(seed)
    values = ["root", "bob", "10.0.0.1", "22", "blk_-17", "rdd_3_1", "7", "3.0", "host-2"]
    lines, truth = [], []
    for _ in range(600):
        event = rng.choice(EVENTS)
        line = event
        while "<*>" in line:
            line = line.replace("<*>", rng.choice(values), 1)
        lines.append(line)
        truth.append(event)
    store = TemplateStore()
    teacher = dict(zip(lines, truth, strict=True))
    calls = 0

    def model(line: str) -> str:
        nonlocal calls
        calls += 1
        return teacher[line]

    found = [_parse(store, line, model) for line in lines]
    assert _ga([f.template_id for f in found], truth) == 1.0
    assert [f.template for f in found] == truth
    assert calls == len(set(truth))


def test_a_value_the_model_left_literal_is_generalized_keeping_the_id() -> None:
    """'took=31219ms' written literally by the model: the next line of the cluster that
    differs only in tokens with digits widens the template, with no call and the same id."""
    store = TemplateStore()
    first = _parse(store, "request done status=200 took=31219ms", lambda line: line)
    assert first.template == "request done status=200 took=31219ms"
    again = store.lookup("request done status=404 took=87ms")
    assert isinstance(again, Match)
    assert again.template == "request done status=<*> took=<*>"
    assert (again.template_id, again.params) == (first.template_id, ("404", "87ms"))
    words = store.lookup("request failed status=500 took=3ms")
    assert isinstance(words, Miss)  # a different word: the model decides


def test_a_drain_leaf_keeps_only_its_newest_clusters() -> None:
    """Thousands of distinct lines of one shape in one Drain leaf: the leaf holds at most
    ``max_leaf`` clusters, so a line is compared with that many, not with all."""
    store = TemplateStore(StoreConfig(max_leaf=16))
    rng = random.Random(5)
    for i in range(400):
        words = " ".join("".join(rng.choice("abcdefghij") for _ in range(6)) for _ in range(8))
        _parse(store, f"{i} {words}", lambda _: None)
    leaves = [store._drain.drain.root_node.key_to_child_node["9"]]
    sizes = []
    while leaves:
        node = leaves.pop()
        sizes.append(len(node.cluster_ids))
        leaves.extend(node.key_to_child_node.values())
    assert max(sizes) == 16


def test_without_a_model_a_clusters_template_follows_drain_and_keeps_its_id() -> None:
    """The budget's local-only mode: Drain widens the cluster and the line gets the
    wider template under the id the cluster had, not a new id per variant."""
    store = TemplateStore()
    first = _parse(store, "Worker alpha ready", lambda _: None)
    second = _parse(store, "Worker beta ready", lambda _: None)
    assert (first.template, second.template) == ("Worker alpha ready", "Worker <*> ready")
    assert second.template_id == first.template_id
    assert second.source == "local"
    assert isinstance(store.lookup("Worker gamma ready"), Match)
