"""Drain3 clusters lines; this store keeps, per cluster, the templates the model gave.

Drain3 (``TemplateMiner`` with general masks) says which cluster a line belongs to, in
time bounded by the tokens it is given. What Drain3 lacks, and this adds:

- the model's template for a cluster, learned once: a later line of the cluster that
  fits a template already learned is answered here (``store``), with its values;
- a line of a known cluster that fits none of its templates is a different event that
  Drain merged: it is a ``Miss`` again, and the model is asked about it, unless it
  differs from a learned template only in tokens with digits (a value the model left
  literal: the template is widened, keeping its id);
- before asking, a line of a new cluster is fitted to the templates learned elsewhere
  that share its first token, so an event Drain split in two clusters costs one call;
- a template id that is the hash of the template as first learned, so every replica
  and restart agrees on it, and clusters the model names alike share it;
- without a usable model answer, Drain's template of the cluster (followed as Drain
  widens it, under one id);
- bounded leaves: a Drain leaf keeps its newest ``max_leaf`` clusters (``bounded_drain``);
- a hard cap on what is examined: the first ``max_tokens`` tokens (and ``max_chars``
  characters) of a message; the rest of a longer line is one more ``<*>``.

Pure and synchronous (no model, no I/O); one store per route. A handler does::

    found = store.lookup(content)
    if isinstance(found, Miss):                      # ask the model, once per cluster
        found = store.learn(content, template_from_model, found.cluster)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from handlers.logs.masks import instructions
from handlers.logs.templates import WILDCARD, Template, fitted, stable_id


@dataclass(frozen=True)
class StoreConfig:
    """Drain3's settings and the store's bounds: the same for every system (EVAL.md says
    how they were chosen, on some systems and checked on others)."""

    sim_th: float = 0.3  # Drain similarity threshold: higher splits more
    depth: int = 4  # Drain prefix tree depth (>= 3)
    max_children: int = 100
    masks: str = "general"  # a set of handlers.logs.masks.MASK_SETS
    max_clusters: int = 10_000  # Drain's clusters (LRU), and this store's
    max_tokens: int = 64  # of a message, given to Drain and matched against templates
    max_chars: int = 2_000
    max_templates_per_cluster: int = 16  # beyond: Drain's own template answers
    max_candidates: int = 32  # templates of other clusters fitted to a new cluster's line
    max_leaf: int = 64  # clusters of one Drain leaf a line is compared with (the newest)


def bounded_drain(config: StoreConfig, param_str: str) -> Any:
    """Drain3's ``Drain`` keeping the newest ``max_leaf`` clusters of each leaf only.
    Plain Drain compares a line with every cluster of its leaf (all clusters of one token
    count and first tokens) and copies the leaf's list on every new cluster: with
    thousands of them, 15-40 ms per line. Older clusters of a full leaf are forgotten
    by the tree (their learned templates still answer through the store's index)."""
    from drain3.drain import Drain  # type: ignore[import-untyped]  # noqa: PLC0415

    class BoundedDrain(Drain):  # type: ignore[misc]
        def fast_match(
            self, cluster_ids: Sequence[int], tokens: list[str], sim_th: float, include_params: bool
        ) -> Any:
            newest = cluster_ids[-config.max_leaf :]
            return super().fast_match(newest, tokens, sim_th, include_params)

        def add_seq_to_prefix_tree(self, root_node: Any, cluster: Any) -> None:
            # Drain rewrites the whole leaf list on every new cluster: keep it short.
            super().add_seq_to_prefix_tree(root_node, cluster)
            leaf = self._leaf(root_node, cluster.log_template_tokens)
            if leaf is not None and len(leaf.cluster_ids) > config.max_leaf:
                del leaf.cluster_ids[: -config.max_leaf]

        def _leaf(self, root_node: Any, tokens: Sequence[str]) -> Any:
            """The leaf ``tree_search`` reaches for ``tokens`` (the same walk)."""
            node = root_node.key_to_child_node.get(str(len(tokens)))
            depth = 1
            for token in tokens:
                if node is None or depth >= self.max_node_depth or depth >= len(tokens):
                    break
                children = node.key_to_child_node
                node = children.get(token) or children.get(self.param_str)
                depth += 1
            return node

    return BoundedDrain(
        depth=config.depth,
        sim_th=config.sim_th,
        max_children=config.max_children,
        max_clusters=config.max_clusters,
        param_str=param_str,
        parametrize_numeric_tokens=True,
    )


@dataclass(frozen=True, slots=True)
class Match:
    """A line's template. ``source``: ``store`` (a learned template fitted), ``model``
    (just learned from the model), ``local`` (Drain's template, the model's answer being
    unusable or the cluster full)."""

    template_id: str
    template: str
    params: tuple[str, ...]
    source: Literal["store", "model", "local"]


@dataclass(frozen=True, slots=True)
class Miss:
    """A line no learned template fits: ask the model, then ``learn(..., cluster)``.
    Concurrent misses of one ``cluster`` can share one model call."""

    cluster: int
    local_template: str  # Drain's template of the cluster, for when there is no model


@dataclass(frozen=True, slots=True)
class _Learned:
    template: Template
    template_id: str
    source: Literal["model", "local"]


class TemplateStore:
    """Drain3 plus the learned templates of each cluster; bounded by ``max_clusters``."""

    def __init__(self, config: StoreConfig | None = None) -> None:
        from drain3 import TemplateMiner  # type: ignore[import-untyped]  # noqa: PLC0415
        from drain3.template_miner_config import (  # type: ignore[import-untyped]  # noqa: PLC0415
            TemplateMinerConfig,
        )

        self.config = config or StoreConfig()
        drain_config: Any = TemplateMinerConfig()
        drain_config.drain_sim_th = self.config.sim_th
        drain_config.drain_depth = self.config.depth
        drain_config.drain_max_children = self.config.max_children
        drain_config.drain_max_clusters = self.config.max_clusters
        drain_config.masking_instructions = instructions(self.config.masks)
        drain_config.parametrize_numeric_tokens = True
        self._drain: Any = TemplateMiner(None, drain_config)
        self._drain.drain = bounded_drain(self.config, self._drain.drain.param_str)
        self._clusters: OrderedDict[int, list[_Learned]] = OrderedDict()
        # Learned templates by their first token ("" if it holds a slot): a line of a new
        # cluster is fitted against those sharing its first token before the model is
        # asked, so a template Drain split in two clusters costs one call, not two.
        self._by_first: OrderedDict[str, list[_Learned]] = OrderedDict()

    def __len__(self) -> int:
        """Distinct templates learned (over all clusters)."""
        return len({entry.template_id for entries in self._clusters.values() for entry in entries})

    def templates(self) -> dict[str, str]:
        """Template id -> template, of everything learned."""
        return {e.template_id: e.template.text for es in self._clusters.values() for e in es}

    def split(self, content: str) -> tuple[str, str]:
        """``(head, tail)``: what is examined (capped, blanks normalized) and the rest, as
        written (only copied: a megabyte of tail costs what copying it does)."""
        tokens = content.split(maxsplit=self.config.max_tokens)
        tail = tokens.pop() if len(tokens) > self.config.max_tokens else ""
        head = " ".join(tokens)
        if len(head) > self.config.max_chars:
            cut = head.rfind(" ", 0, self.config.max_chars)
            cut = cut if cut > 0 else self.config.max_chars
            head, tail = head[:cut], (head[cut:] + " " + tail).strip()
        return head, tail.strip()

    def lookup(self, content: str) -> Match | Miss:
        """The line's template if a learned one of its cluster fits, else a ``Miss``. The
        line joins its Drain cluster (adding the same line twice changes nothing)."""
        head, tail = self.split(content)
        found = self._drain.add_log_message(head)
        cluster: int = found["cluster_id"]
        entries = self._clusters.get(cluster)
        if entries is not None:
            self._clusters.move_to_end(cluster)
            for entry in entries:
                values = entry.template.match(head)
                if values is not None:
                    return self._match(entry, values, tail, "store")
        for i, entry in enumerate(entries or ()):
            wider = _generalized(entry, head)
            values = None if wider is None else wider.template.match(head)
            if entries and wider is not None and values is not None:
                entries[i] = wider  # the model left a value (a token with digits) literal
                self._add(entries, wider)
                return self._match(wider, values, tail, "store")
        for entry in self._candidates(head):
            values = entry.template.match(head)
            if values is not None:  # known elsewhere: this cluster learns it too
                self._add(self._clusters.setdefault(cluster, []), entry)
                self._bound()
                return self._match(entry, values, tail, "store")
        return Miss(cluster, found["template_mined"])

    def _candidates(self, head: str) -> list[_Learned]:
        first = head.split(" ", 1)[0]
        found = [*self._by_first.get(first, ()), *self._by_first.get("", ())]
        found.sort(key=lambda e: -e.template.weight)
        return found[: self.config.max_candidates]

    def _add(self, entries: list[_Learned], entry: _Learned) -> None:
        if entry not in entries:
            if len(entries) >= self.config.max_templates_per_cluster:
                return
            entries.append(entry)
        entries.sort(key=lambda e: -e.template.weight)  # the most specific is tried first
        if entry.source != "model":
            return  # only the model's templates are offered to other clusters
        first = entry.template.text.split(" ", 1)[0]
        key = "" if WILDCARD in first else first
        bucket = self._by_first.setdefault(key, [])
        self._by_first.move_to_end(key)
        if entry not in bucket:
            bucket.append(entry)
            bucket.sort(key=lambda e: -e.template.weight)
            del bucket[self.config.max_candidates :]
        while len(self._by_first) > self.config.max_clusters:
            self._by_first.popitem(last=False)

    def _bound(self) -> None:
        while len(self._clusters) > self.config.max_clusters:
            self._clusters.popitem(last=False)

    def learn(self, content: str, template: str | None, cluster: int) -> Match:
        """Learn the model's ``template`` for the line's cluster and answer the line with
        it. A template that does not fit the line (or None: no usable answer) gives way
        to Drain's template of the cluster, which always fits the line."""
        head, tail = self.split(content)
        entries = self._clusters.setdefault(cluster, [])
        self._clusters.move_to_end(cluster)
        self._bound()
        fit = fitted(template, head) if template else None
        source: Literal["model", "local"] = "model"
        if fit is None or len(entries) >= self.config.max_templates_per_cluster:
            fit, source = self._local(head, cluster), "local"
        parsed, values = fit
        for entry in entries:
            if entry.template.text == parsed.text and entry.template.wide == parsed.wide:
                return self._match(entry, values, tail, source)
        if source == "local":
            for i, entry in enumerate(entries):
                if entry.source == "local":  # Drain widened the cluster: follow it, same id
                    wider = _Learned(parsed, entry.template_id, "local")
                    entries[i] = wider
                    entries.sort(key=lambda e: -e.template.weight)
                    return self._match(wider, values, tail, source)
        entry = _Learned(parsed, stable_id("T", parsed.text), source)
        self._add(entries, entry)
        return self._match(entry, values, tail, source)

    def _local(self, head: str, cluster: int) -> tuple[Template, tuple[str, ...]]:
        """Drain's template of the cluster fitted to the line, else the line itself."""
        drained = self._drain.drain.id_to_cluster.get(cluster)
        if drained is not None:
            fit = fitted(drained.get_template(), head)
            if fit is not None:
                return fit
        return Template.parse(head.replace(WILDCARD, "<_>")), ()

    def _match(
        self,
        entry: _Learned,
        values: tuple[str, ...],
        tail: str,
        source: Literal["store", "model", "local"],
    ) -> Match:
        text, template_id = entry.template.text, entry.template_id
        if tail:  # the unexamined rest of a long line: one more variable
            text, values = f"{text} {WILDCARD}", (*values, tail)
            template_id = stable_id("T", f"{template_id} {WILDCARD}")
        return Match(template_id, text, values, source)


def _has_digit(token: str) -> bool:
    return any(c.isdigit() for c in token)


def _slot_in(mine: str, token: str) -> str:
    """The two tokens as one with a slot where they differ, keeping a shared key or
    unit up to a punctuation mark: ``status=200``/``status=404`` -> ``status=<*>``."""
    n = 0
    while n < min(len(mine), len(token)) and mine[n] == token[n]:
        n += 1
    head = mine[:n]
    cut = max((i + 1 for i, c in enumerate(head) if not c.isalnum()), default=0)
    m = 0
    while m < min(len(mine), len(token)) - n and mine[-1 - m] == token[-1 - m]:
        m += 1
    tail = mine[len(mine) - m :] if m else ""
    keep = min((i for i, c in enumerate(tail) if not c.isalnum()), default=len(tail))
    return head[:cut] + WILDCARD + tail[keep:]


def _generalized(entry: _Learned, head: str) -> _Learned | None:
    """``entry`` with the literal tokens that hold digits, where ``head`` has other
    digits, made ``<*>``, if that is all that keeps it from fitting ``head`` (same token
    count, every word the same). Numbers are values on every system: Drain3 treats such
    tokens as wildcards too. The id stays, so the lines before and after share it."""
    if entry.template.wide:
        return None
    ours, theirs = entry.template.text.split(" "), head.split(" ")
    if len(ours) != len(theirs):
        return None
    changed = False
    out = []
    for mine, token in zip(ours, theirs, strict=True):
        if mine == token or (WILDCARD in mine and Template.parse(mine).match(token) is not None):
            out.append(mine)
        elif WILDCARD not in mine and _has_digit(mine) and _has_digit(token):
            out.append(_slot_in(mine, token))
            changed = True
        else:
            return None
    if not changed:
        return None
    return _Learned(Template.parse(" ".join(out)), entry.template_id, entry.source)
