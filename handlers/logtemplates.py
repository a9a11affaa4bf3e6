"""Log lines to templates, locally: header parsing, variable masking and a template store.

The log-parsing handler asks the model once per *new* template, not once per line: most
lines of a stream repeat a few hundred event types, so a store of known templates answers
the rest for free. This module is the local part, pure and synchronous (no model, no
Kafka, no threads):

- ``HeaderParser`` splits a raw line into header fields (timestamp, level, component) and
  the message content, with built-in formats tried in turn (``LogFormat`` compiles a small
  format language such as ``<Timestamp> <Level> <Component>: <Content>``) and a generic
  fallback.
- ``Masker`` replaces obvious variables (numbers, IPs, ids, paths, URLs...) with ``<*>``.
- ``TemplateMiner`` matches content against known templates, clusters unknown lines with
  Drain (when the ``local`` extra is installed) so that a line of an already known cluster
  does not cost another model call, and learns the templates the model returns.

A handler does::

    found = miner.lookup(content)
    if isinstance(found, Miss):            # a new kind of line: ask the model, once
        found = miner.learn(content, template_from_model, found.cluster)
    found.template_id, found.template, found.params
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

WILDCARD = "<*>"
_MON = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_DOW = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"

# ---------------------------------------------------------------------------------------
# Timestamps: the shapes seen in the wild, each with how to read it as ISO 8601.
# ---------------------------------------------------------------------------------------

# fmt: off
_TIMESTAMP_SHAPES: tuple[tuple[str, str], ...] = (
    # ISO 8601 / RFC 3339, with a space or T, optional fraction (. or ,) and zone
    ("iso", r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"),
    # 2024/01/31 12:00:00
    ("ymd_slash", r"\d{4}/\d{2}/\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?"),
    # ctime: Sun Dec 04 04:47:44 2005
    ("ctime", rf"{_DOW} {_MON} [ \d]?\d \d{{2}}:\d{{2}}:\d{{2}}(?:\.\d+)? \d{{4}}"),
    # Apache access log: 10/Oct/2000:13:55:36 -0700
    ("clf", rf"\d{{2}}/{_MON}/\d{{4}}:\d{{2}}:\d{{2}}:\d{{2}}(?: [+-]\d{{4}})?"),
    # syslog (no year): Dec 10 06:55:46
    ("syslog", rf"{_MON} +\d{{1,2}} \d{{2}}:\d{{2}}:\d{{2}}"),
    # yy/MM/dd HH:mm:ss (log4j default of Spark, Hadoop)
    ("yymmdd_slash", r"\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}"),
    # yyMMdd HHmmss (HDFS)
    ("yymmdd_compact", r"\d{6} \d{6}"),
    # yyyyMMdd-HH:mm:ss:SSS (Android apps)
    ("ymd_dash_time", r"\d{8}-\d{1,2}:\d{1,2}:\d{1,2}(?:[:.]\d{1,3})?"),
    # MM.dd HH:mm:ss (no year)
    ("md_dot", r"\d{2}\.\d{2} \d{2}:\d{2}:\d{2}"),
)
# fmt: on
TIMESTAMP_PATTERN = "|".join(f"(?:{shape})" for _, shape in _TIMESTAMP_SHAPES)
_TIMESTAMP_FULL = [(name, re.compile(shape)) for name, shape in _TIMESTAMP_SHAPES]


# How each shape reads (its fraction of a second and zone are handled apart).
_STRPTIME = {
    "ymd_slash": "%Y/%m/%d %H:%M:%S",
    "ctime": "%a %b %d %H:%M:%S %Y",
    "clf": "%d/%b/%Y:%H:%M:%S",
    "syslog": "%Y %b %d %H:%M:%S",
    "yymmdd_slash": "%y/%m/%d %H:%M:%S",
    "yymmdd_compact": "%y%m%d %H%M%S",
    "ymd_dash_time": "%Y%m%d-%H:%M:%S",
    "md_dot": "%Y %m.%d %H:%M:%S",
}
_YEARLESS = {"syslog", "md_dot"}
_FRACTION = re.compile(r"(.*:\d{1,2}:\d{1,2})([.,:])(\d{1,6})")
_FRACTIONAL = {"ymd_slash", "ctime", "ymd_dash_time"}
_ZONE = re.compile(r"\s?(Z|[+-]\d{2}:?\d{2})$")


def iso_timestamp(raw: str, year: int | None = None) -> str | None:
    """``raw`` as ISO 8601 (``2005-12-04T04:47:44``), or None if no known shape fits.

    Shapes without a year (syslog) take ``year``, else the current year, as syslog
    receivers do. Shapes without a zone stay naive: the log did not say.
    """
    text = " ".join(raw.split())
    name = next((n for n, pattern in _TIMESTAMP_FULL if pattern.fullmatch(text)), None)
    if name is None:
        return None
    if name == "iso":
        stamp = text.replace(" ", "T", 1).replace(",", ".")
        try:
            datetime.fromisoformat(stamp)
        except ValueError:
            return None
        return stamp
    zone = _ZONE.search(text) if name == "clf" else None
    if zone is not None:
        text = text[: zone.start()]
    fraction = _FRACTION.fullmatch(text) if name in _FRACTIONAL else None
    if fraction is not None:
        text = fraction.group(1)
    if name in _YEARLESS:
        text = f"{year if year is not None else datetime.now(UTC).year} {text}"
    try:
        parsed = datetime.strptime(text, _STRPTIME[name])
    except ValueError:
        return None
    out = parsed.isoformat()
    if fraction is not None:  # "HH:MM:SS:7" counts milliseconds; "HH:MM:SS.7" is a decimal
        digits = fraction.group(3)
        out += "." + (digits.zfill(3) if fraction.group(2) == ":" else digits.ljust(3, "0"))
    if zone is not None:
        offset = zone.group(1)
        out += offset if ":" in offset or offset == "Z" else f"{offset[:3]}:{offset[3:]}"
    return out


# ---------------------------------------------------------------------------------------
# Header formats
# ---------------------------------------------------------------------------------------

_LEVEL_WORDS = {
    "trace": "trace",
    "finest": "trace",
    "debug": "debug",
    "fine": "debug",
    "info": "info",
    "information": "info",
    "notice": "info",
    "warn": "warning",
    "warning": "warning",
    "err": "error",
    "error": "error",
    "severe": "error",
    "crit": "critical",
    "critical": "critical",
    "fatal": "critical",
    "alert": "critical",
    "emerg": "critical",
    "emergency": "critical",
}
_LEVEL = "(?i:" + "|".join(sorted(_LEVEL_WORDS, key=len, reverse=True)) + ")"
# What each named field of a format may look like; other names match lazily anything.
_FIELD_PATTERNS = {
    "Timestamp": TIMESTAMP_PATTERN,
    "Date": r"\d{2,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{6,8}",
    "Time": r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,:]\d+)?|\d{6}",
    "Level": _LEVEL,
    "Pid": r"\d+",
    "Host": rf"(?!{_LEVEL}\s)[\w.\-]+",
    "Component": r"[^\s:|\[\]]+(?:\[\d+\])?",
    "Program": r".+?",
    "Node": r".*?",
    "Line": r"\d+",
    "Content": r".*",
}
_COMPONENT_FIELDS = ("Component", "Program", "Logger", "Process", "Service")


def level_name(raw: str | None) -> str | None:
    """The canonical level (trace, debug, info, warning, error, critical) of a level word."""
    return _LEVEL_WORDS.get(raw.strip("[]:").lower()) if raw else None


class LogFormat:
    """A line format such as ``<Timestamp> <Level> <Component>: <Content>``, as a regex.

    ``<Name>`` is a field; known names (``Timestamp``, ``Date``, ``Time``, ``Level``, ``Pid``,
    ``Host``, ``Component``, ``Program``, ``Content``...) only match what such a field looks
    like, so a format does not claim lines of another; other names match anything. Literal
    text is literal, and a space matches any run of blanks. ``<Content>`` is the message.
    """

    def __init__(self, name: str, spec: str) -> None:
        self.name = name
        self.spec = spec
        pieces = re.split(r"<(\w+)>", spec)
        regex = ["^"]
        for index, piece in enumerate(pieces):
            if index % 2 == 0:
                regex.append(r"\s+".join(re.escape(part) for part in piece.split(" ")))
            else:
                regex.append(f"(?P<{piece}>{_FIELD_PATTERNS.get(piece, '.*?')})")
        if "Content" not in pieces[1::2]:
            raise ValueError(f"log format {spec!r} has no <Content> field")
        self.regex = re.compile("".join(regex) + "$", re.DOTALL)

    def __repr__(self) -> str:
        return f"LogFormat({self.name!r}, {self.spec!r})"

    def fields(self, line: str) -> dict[str, str] | None:
        found = self.regex.match(line)
        return None if found is None else {k: v for k, v in found.groupdict().items() if v}


# fmt: off
BUILTIN_FORMATS: tuple[LogFormat, ...] = (
    LogFormat("hdfs", "<Timestamp> <Pid> <Level> <Component>: <Content>"),
    LogFormat("log4j", "<Timestamp> <Level> <Component>: <Content>"),
    LogFormat("log4j_thread", "<Timestamp> <Level> [<Thread>] <Component>: <Content>"),
    LogFormat("zookeeper", "<Timestamp> - <Level> [<Node>:<Component>@<Line>] - <Content>"),
    LogFormat("logback", "<Timestamp> [<Thread>] <Level> <Component> - <Content>"),
    LogFormat("python", "<Timestamp> - <Component> - <Level> - <Content>"),
    LogFormat("apache_error", "[<Timestamp>] [<Level>] <Content>"),
    LogFormat("syslog", "<Timestamp> <Host> <Component>: <Content>"),
    LogFormat("syslog_program", "<Timestamp> <Host> <Program>: <Content>"),
    LogFormat("pipe", "<Timestamp>|<Component>|<Pid>|<Content>"),
    LogFormat("bracket_program", "[<Timestamp>] <Program> - <Content>"),
    LogFormat("level_first", "<Timestamp> [<Level>] <Content>"),
    LogFormat("iso_level", "<Timestamp> <Level> <Content>"),
)
# fmt: on
_GENERIC = re.compile(
    rf"^\s*\[?(?P<Timestamp>{TIMESTAMP_PATTERN})\]?[\s:|-]*"
    rf"(?:[\[<]?(?P<Level>{_LEVEL})[\]>:]?(?=\s)[\s|-]*)?"
    r"(?:(?P<Component>[A-Za-z_][\w.$/-]*(?:\[\d+\])?):(?=\s)\s*)?"
    r"(?P<Content>.*)$",
    re.DOTALL,
)
_LEVEL_ONLY = re.compile(rf"^\s*[\[<]?(?P<Level>{_LEVEL})[\]>:]?\s+(?P<Content>.*)$", re.DOTALL)
_PID_SUFFIX = re.compile(r"^(?P<name>.+?)\[(?P<pid>\d+)\]$")


@dataclass(frozen=True, slots=True)
class Header:
    """A line split into its header and message: what the template is made of."""

    content: str
    timestamp: str | None = None  # ISO 8601 when the shape is known, else as written
    level: str | None = None  # canonical: trace, debug, info, warning, error, critical
    component: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)  # every header field, as written
    format: str | None = None  # the name of the format that matched, None for the fallback


class HeaderParser:
    """Splits raw lines into ``Header``s: a configured format, else detection.

    Detection tries the built-in formats and remembers the last one that matched, so a
    stream of one system costs one regex per line. ``year`` completes timestamps that have
    none (syslog); None means the current year.
    """

    def __init__(
        self, formats: Sequence[LogFormat] | None = None, *, year: int | None = None
    ) -> None:
        self.formats: list[LogFormat] = list(formats or BUILTIN_FORMATS)
        self.year = year

    @classmethod
    def from_spec(cls, spec: str, *, year: int | None = None) -> HeaderParser:
        """A parser for a route's ``log_format``: a built-in format's name (``syslog``) or a
        format string (``<Timestamp> <Level> <Component>: <Content>``)."""
        named = {fmt.name: fmt for fmt in BUILTIN_FORMATS}
        return cls([named.get(spec) or LogFormat("configured", spec)], year=year)

    def parse(self, line: str) -> Header:
        line = line.rstrip("\r\n")
        for index, fmt in enumerate(self.formats):
            found = fmt.fields(line)
            if found is not None:
                if index:  # most lines of a stream share the format of the one before
                    self.formats.insert(0, self.formats.pop(index))
                return self._header(found, fmt.name)
        return self._fallback(line)

    def _header(self, found: dict[str, str], name: str | None) -> Header:
        stamp = found.get("Timestamp") or " ".join(found[k] for k in ("Date", "Time") if k in found)
        component = next((found[k] for k in _COMPONENT_FIELDS if k in found), None)
        fields = dict(found)
        content = fields.pop("Content", "").strip()
        if component is not None:
            component = component.strip()
            pid = _PID_SUFFIX.match(component)
            if pid is not None:  # syslog's ``sshd[24200]``
                component = pid.group("name")
                fields.setdefault("Pid", pid.group("pid"))
        return Header(
            content=content,
            timestamp=(iso_timestamp(stamp, self.year) or stamp) if stamp else None,
            level=level_name(found.get("Level")),
            component=component or None,
            fields=fields,
            format=name,
        )

    def _fallback(self, line: str) -> Header:
        found = _GENERIC.match(line) or _LEVEL_ONLY.match(line)
        if found is None:
            return Header(content=line.strip())
        return self._header({k: v for k, v in found.groupdict().items() if v}, None)


def detect_format(lines: Iterable[str]) -> LogFormat | None:
    """The built-in format that matches most of ``lines`` (a sample), if any does."""
    sample = list(lines)
    best: tuple[int, int, LogFormat | None] = (0, 0, None)
    for rank, fmt in enumerate(BUILTIN_FORMATS):
        hits = sum(fmt.fields(line) is not None for line in sample)
        if hits > best[0]:
            best = (hits, -rank, fmt)
    return best[2]


# ---------------------------------------------------------------------------------------
# Masking
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mask:
    """One kind of variable: what it looks like, replaced by ``<*>`` before clustering."""

    name: str
    pattern: str


_AMOUNT = r"\d+(?:\.\d+)? ?"
_TIME_UNIT = r"[mun]?s|secs?|seconds|mins?|minutes|h|hours"
_TLD = r"(?:com|net|org|edu|gov|mil|int|io|co|uk|de|fr|jp|cn|hk|ru|br|in|au|nl|info|biz|local)"
# fmt: off
DEFAULT_MASKS: tuple[Mask, ...] = (
    Mask("url", r"\b[a-zA-Z][\w+.-]*://[^\s,;)\]'\"]+"),
    Mask("timestamp", TIMESTAMP_PATTERN),
    Mask("uuid", r"\b[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}\b"),
    # the value of a key that names a host or an account: "rhost=h.example.om", "user=bob"
    Mask(
        "key_value",
        r"(?:(?<=\buser=)|(?<=\busername=)|(?<=\brhost=)|(?<=\bhost=)|(?<=\bhostname=))"
        r"[^\s,;&)]+",
    ),
    Mask("ip", r"(?<![\w./])/?(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])"),
    Mask("host", rf"(?<![\w.-])(?:[A-Za-z0-9-]+\.)+{_TLD}(?::\d{{1,5}})?(?![\w-])"),
    # "12 bytes", "4.5 KB", "1268 bytes (1.23 KB)": one value, however many tokens
    Mask("size", rf"(?<![\w.]){_AMOUNT}(?:bytes|[KMGT]?i?B)(?: \({_AMOUNT}[KMGT]i?B\))?(?!\w)"),
    Mask("duration", rf"(?<![\w.])[<>~]?{_AMOUNT}(?:{_TIME_UNIT})(?!\w)"),
    Mask("path", r"(?<![\w/.:])(?:/[\w.@%+~,-]+)+/?|\b[A-Za-z]:\\[^\s]+"),
    Mask("hex", r"\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b"),
    Mask("id", r"\b[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*?_-?\d+\w*"),
    # an account name: "user bob from", "for root [preauth]", "session closed for user news"
    Mask(
        "account",
        r"(?:(?<=\b[Uu]ser )|(?<=\bfor ))(?!invalid\b|unknown\b|user\b)[\w.@-]+"
        r"(?=[,;]|\s+(?:from|by)\b|\s+\[|\s*$)",
    ),
    Mask("number", r"(?<![\w.])[-+]?\d+(?:[.,:\-]\d+)*(?![\w])"),
)
# fmt: on


_PREFIX = "\x00"  # index keys of prefix anchors; no token holds this character
_RUN_OF_SLOTS = re.compile(r"(?<!\S)<\*>(?: <\*>)+(?!\S)")


class Masker:
    """Replaces variables with ``<*>``: what Drain clusters on, and the local template."""

    def __init__(self, masks: Sequence[Mask] = DEFAULT_MASKS) -> None:
        self.masks = tuple(masks)
        self._regex = re.compile(
            "|".join(f"(?P<m{i}>{mask.pattern})" for i, mask in enumerate(self.masks))
        )

    def mask(self, content: str, *, runs: bool = False) -> str:
        """``content`` with every variable replaced by ``<*>`` and blanks collapsed. With
        ``runs``, a run of ``<*>`` tokens becomes one: lists of values (block ids...) vary
        in length, which would split a Drain cluster by token count."""
        masked = " ".join(self._regex.sub(WILDCARD, content).split())
        return _RUN_OF_SLOTS.sub(WILDCARD, masked) if runs else masked

    def spans(self, content: str) -> list[tuple[int, int]]:
        """The character spans of ``content`` that are variables."""
        return [m.span() for m in self._regex.finditer(content)]

    def variables(self, content: str) -> list[tuple[str, str]]:
        """The ``(kind, value)`` of each variable, in order."""
        return [
            (self.masks[int(str(m.lastgroup)[1:])].name, m.group(0))
            for m in self._regex.finditer(content)
        ]


# ---------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------


def normalize_template(template: str) -> str:
    """One space between tokens and ``<*>`` for the usual ways of writing a variable."""
    text = re.sub(r"<\s*\*\s*>|\{\s*\*?\s*\}|<VAR>|<var>", WILDCARD, template)
    return " ".join(text.split())


def error_signature(template: str) -> str:
    """A short stable id of a template (``E`` + 8 hex): the same on every node and restart,
    so alerts and dashboards can group by it."""
    digest = hashlib.blake2b(normalize_template(template).encode(), digest_size=4).hexdigest()
    return f"E{digest}"


def _token_regex(token: str, wide: Sequence[bool] = ()) -> str:
    """A token with ``<*>`` inside (``[<*>]``, ``uid=<*>``): each slot stays in the token
    unless ``wide`` says it holds blanks too (``size <*>,`` for ``size 5.2 KB,``)."""
    parts = token.split(WILDCARD)
    flags = list(wide) or [False] * (len(parts) - 1)
    out = [re.escape(parts[0])]
    for flag, part in zip(flags, parts[1:], strict=True):
        out.append(r"(.*?)" if flag else r"(\S*?)")
        out.append(re.escape(part))
    return "".join(out)


def compile_template(template: str, spans: Sequence[bool] | None = None) -> re.Pattern[str]:
    """The regex of a template. ``spans`` has a flag per ``<*>``: True if the slot may hold
    several tokens (or, standalone, none), as Loghub-style slots such as ``12 bytes (1 KB)``;
    else a standalone slot is one token and one inside a token stays in it. Without
    ``spans`` every slot spans (the loosest reading)."""
    tokens = template.split()
    wide = iter(spans if spans is not None else [True] * template.count(WILDCARD))
    pieces: list[tuple[str, bool]] = []
    for token in tokens:
        if token == WILDCARD:
            flag = next(wide, True)
            pieces.append((r"(.*?)" if flag else r"(\S+)", flag))
        else:
            flags = [next(wide, True) for _ in range(token.count(WILDCARD))]
            pieces.append((_token_regex(token, flags), False))
    regex = ["^"]
    for index, (piece, loose) in enumerate(pieces):
        if index:
            regex.append(r"\s*" if loose or pieces[index - 1][1] else r"\s+")
        regex.append(piece)
    return re.compile("".join(regex) + "$", re.DOTALL)


def template_params(template: str, content: str) -> tuple[str, ...] | None:
    """The values of the ``<*>`` slots of ``template`` in ``content``, None if it does not
    match. Standalone slots may span tokens here (the loosest reading)."""
    found = compile_template(normalize_template(template)).match(content.strip())
    return None if found is None else tuple((g or "").strip() for g in found.groups())


@dataclass(frozen=True, slots=True)
class Match:
    """A line's template: ``template_id`` stays the same when the template is generalised.

    ``source`` says how it was found: ``store`` (a known template matched), ``cluster``
    (a known cluster; the template was widened locally), ``model`` (just learned from the
    model), ``local`` (learned from the masked line, the model's answer being unusable).
    """

    template_id: str
    template: str
    params: tuple[str, ...]
    source: Literal["store", "cluster", "model", "local"]

    @property
    def signature(self) -> str:
        return error_signature(self.template)


@dataclass(frozen=True, slots=True)
class Miss:
    """A line of no known template: ask the model, then ``learn``.

    ``cluster`` identifies the line's Drain cluster: pass it back to ``learn``, and let
    concurrent misses of one cluster share one model call. ``local_template`` is the
    masked line, for when there is no model. ``doubt`` means the cluster is known but
    the line differs from its templates in words, not just values: the model decides
    whether it is the same event.
    """

    cluster: int
    local_template: str
    doubt: bool = False


@dataclass(slots=True)
class _Entry:
    template_id: str
    template: str
    spans: tuple[bool, ...]
    regex: re.Pattern[str]
    example: str  # the line it was learned from: a generalisation must still match it
    anchor: str | None  # its most telling literal token, for the index
    weight: int  # literal characters: more specific templates are tried first
    values: tuple[bool, ...]  # per token: a literal that is a value in ``example``


@dataclass(slots=True)
class _Cluster:
    template_ids: list[str] = field(default_factory=list)
    asks: int = 0  # model calls spent on doubts in this cluster


@dataclass(frozen=True)
class MinerConfig:
    """How lines are clustered and how much is remembered."""

    sim_th: float = 0.4  # Drain similarity threshold: higher splits more
    depth: int = 4  # Drain prefix tree depth (>= 3)
    max_children: int = 100
    extra_delimiters: tuple[str, ...] = ()
    max_templates: int = 10_000  # least recently used templates are forgotten beyond this
    max_clusters: int = 20_000
    masks: tuple[Mask, ...] = DEFAULT_MASKS
    use_drain: bool = True  # False (or drain3 missing): a cluster is the masked line itself
    # A known cluster's line that differs in words is sent to the model at most this many
    # times per cluster; after that it is generalised locally. 0: never ask, generalise.
    max_doubts: int = 4
    max_templates_per_cluster: int = 16
    max_generalise_tokens: int = 200  # longer lines are not aligned token by token


class TemplateMiner:
    """Known templates, and the clusters that say a line is not new even when no template
    matches it yet. Bounded (LRU) and single-threaded: one per route, on the event loop."""

    def __init__(self, config: MinerConfig | None = None) -> None:
        self.config = config or MinerConfig()
        self.masker = Masker(self.config.masks)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._by_template: dict[str, str] = {}
        self._index: dict[str, set[str]] = {}
        self._loose: set[str] = set()
        self._prefix_sizes: dict[int, int] = {}  # length of prefix anchors -> how many
        self._clusters: OrderedDict[int, _Cluster] = OrderedDict()
        self._exact: OrderedDict[str, int] = OrderedDict()  # clustering without Drain
        self._drain: Any = self._make_drain() if self.config.use_drain else None

    def _make_drain(self) -> Any:
        try:
            from drain3 import TemplateMiner as DrainMiner  # type: ignore[import-untyped]  # noqa: PLC0415
            from drain3.template_miner_config import (  # type: ignore[import-untyped]  # noqa: PLC0415
                TemplateMinerConfig,
            )
        except ImportError:  # the ``local`` extra is not installed: exact masked clusters
            return None
        config = TemplateMinerConfig()
        config.drain_sim_th = self.config.sim_th
        config.drain_depth = self.config.depth
        config.drain_max_children = self.config.max_children
        config.drain_max_clusters = self.config.max_clusters
        config.drain_extra_delimiters = list(self.config.extra_delimiters)
        config.masking_instructions = []  # masked here, with ``<*>`` as Drain's own wildcard
        return DrainMiner(persistence_handler=None, config=config)

    def __len__(self) -> int:
        return len(self._entries)

    def templates(self) -> dict[str, str]:
        """Template id -> template, least recently used first."""
        return {tid: entry.template for tid, entry in self._entries.items()}

    def template(self, template_id: str) -> str | None:
        entry = self._entries.get(template_id)
        return entry.template if entry else None

    # -- lookups --------------------------------------------------------------------------

    def match(self, content: str) -> Match | None:
        """The known template ``content`` matches, most specific first; None if none does."""
        content = content.strip()
        for entry in self._candidates(content):
            found = entry.regex.match(content)
            if found is not None:
                self._entries.move_to_end(entry.template_id)
                return Match(entry.template_id, entry.template, _values(found), "store")
        return None

    def lookup(self, content: str) -> Match | Miss:
        """``match``; else, in a known cluster, its template widened to cover this line when
        only values differ (no model call); else a ``Miss``: worth asking the model."""
        content = content.strip()
        hit = self.match(content)
        if hit is not None:
            return hit
        masked = self.masker.mask(content, runs=True)
        number = self._cluster(masked)
        cluster = self._clusters.get(number)
        local = self.masker.mask(content)
        if cluster is None:
            return Miss(number, local)
        self._clusters.move_to_end(number)
        best: tuple[int, _Entry, Merged] | None = None
        for entry in self._bound_entries(cluster):
            merged = self._merge(entry, content)
            if merged is not None and (best is None or merged.changed_words < best[0]):
                best = (merged.changed_words, entry, merged)
        if best is not None and (best[0] == 0 or cluster.asks >= self.config.max_doubts):
            widened = self._widen(best[1], best[2], content)
            if widened is not None:
                return widened
        if cluster.asks < self.config.max_doubts:
            cluster.asks += 1
            return Miss(number, local, doubt=best is not None)
        return self.learn(content, None, number)  # the cluster has had its model calls

    def learn(self, content: str, template: str | None, cluster: int | None = None) -> Match:
        """Store the template the model gave for ``content`` and return the line's match.

        A template that does not match its own line, or keeps no literal word of a line
        that has some, is not trusted: the masked line stands in. ``cluster`` (from the
        ``Miss``) lets the cluster's next lines be answered locally; and if the model's
        template also covers a template already learned in that cluster, the model said
        they are one event: that template is widened instead of adding another.
        """
        content = content.strip()
        hit = self.match(content)  # learned meanwhile (another event of the same kind)
        if hit is None:
            source: Literal["model", "local"] = "model"
            candidate = normalize_template(template) if template else ""
            spans = _spans(candidate, content) if candidate else None
            if spans is None or _too_general(candidate, content):
                source = "local"
                candidate = self.masker.mask(content)
                spans = _spans(candidate, content)
            if spans is None:  # masking cannot fail to match, but a line can be odd
                candidate, spans = " ".join(content.split()), ()
            hit = self._same_event(candidate, content, cluster) if source == "model" else None
            if hit is None:
                hit = self._add(candidate, spans, content, source)
        if cluster is not None:
            self._bind(cluster, hit.template_id)
        return hit

    # -- internals ------------------------------------------------------------------------

    def _candidates(self, content: str) -> list[_Entry]:
        """The templates that may match: those with one of the line's tokens as anchor, or
        the beginning of its first token as prefix; and the few with neither."""
        ids: set[str] = set(self._loose)
        tokens = content.split()
        keys = set(tokens)
        if tokens:
            keys.update(_PREFIX + tokens[0][:size] for size in self._prefix_sizes)
        for key in keys:
            found = self._index.get(key)
            if found:
                ids |= found
        entries = [self._entries[i] for i in ids]
        entries.sort(key=lambda e: (-e.weight, e.template_id))
        return entries

    def _cluster(self, masked: str) -> int:
        if self._drain is not None:
            return int(self._drain.add_log_message(masked)["cluster_id"])
        number = self._exact.get(masked)
        if number is None:
            number = (max(self._exact.values()) if self._exact else 0) + 1
            self._exact[masked] = number
            while len(self._exact) > self.config.max_clusters:
                self._exact.popitem(last=False)
        self._exact.move_to_end(masked)
        return number

    def _bound_entries(self, cluster: _Cluster) -> list[_Entry]:
        alive = [self._entries[i] for i in cluster.template_ids if i in self._entries]
        cluster.template_ids = [e.template_id for e in alive]
        return alive

    def _bind(self, number: int, template_id: str) -> None:
        cluster = self._clusters.setdefault(number, _Cluster())
        self._clusters.move_to_end(number)
        if template_id in cluster.template_ids:
            cluster.template_ids.remove(template_id)
        cluster.template_ids.append(template_id)
        del cluster.template_ids[: -self.config.max_templates_per_cluster]
        while len(self._clusters) > self.config.max_clusters:
            self._clusters.popitem(last=False)

    def _same_event(self, candidate: str, content: str, number: int | None) -> Match | None:
        """The cluster's template that the model's ``candidate`` also covers, widened to
        cover ``content``: the model wrote a variable where the two lines differ."""
        cluster = self._clusters.get(number) if number is not None else None
        if cluster is None:
            return None
        loose = compile_template(candidate)
        for entry in reversed(self._bound_entries(cluster)):
            if loose.match(entry.example) is None:
                continue
            merged = self._merge(entry, content)
            widened = self._widen(entry, merged, content) if merged is not None else None
            if widened is not None:
                return Match(widened.template_id, widened.template, widened.params, "model")
        return None

    def _add(self, template: str, spans: Sequence[bool], example: str, source: str) -> Match:
        existing = self._by_template.get(template)
        entry = self._entries.get(existing) if existing else None
        if entry is None:
            template_id = _fresh_id(template, self._entries)
            entry = self._store(template_id, template, tuple(spans), example)
        found = entry.regex.match(example)
        if found is None:  # same text, narrower slots: widen them
            wide = tuple(a or b for a, b in zip(entry.spans, spans, strict=False))
            entry = self._store(entry.template_id, template, wide, entry.example)
            found = entry.regex.match(example)
        params = _values(found) if found is not None else ()
        kind: Literal["model", "local"] = "model" if source == "model" else "local"
        return Match(entry.template_id, entry.template, params, kind)

    def _store(
        self, template_id: str, template: str, spans: tuple[bool, ...], example: str
    ) -> _Entry:
        self._forget(template_id)
        tokens = template.split()
        literals = [t for t in tokens if WILDCARD not in t]
        anchor = max(literals, key=len) if literals else None
        head = tokens[0].split(WILDCARD, 1)[0] if tokens else ""
        if anchor is None and head:  # ``onExtend:<*>``: the line starts with ``onExtend:``
            anchor = _PREFIX + head
            self._prefix_sizes[len(head)] = self._prefix_sizes.get(len(head), 0) + 1
        entry = _Entry(
            template_id=template_id,
            template=template,
            spans=spans,
            regex=compile_template(template, spans),
            example=example,
            anchor=anchor,
            weight=len(template.replace(WILDCARD, "").replace(" ", "")),
            values=literal_values(template, example, self.masker),
        )
        self._entries[template_id] = entry
        self._by_template[template] = template_id
        if anchor is None:
            self._loose.add(template_id)
        else:
            self._index.setdefault(anchor, set()).add(template_id)
        while len(self._entries) > self.config.max_templates:
            self._forget(next(iter(self._entries)))
        return entry

    def _forget(self, template_id: str) -> None:
        entry = self._entries.pop(template_id, None)
        if entry is None:
            return
        if self._by_template.get(entry.template) == template_id:
            del self._by_template[entry.template]
        self._loose.discard(template_id)
        if entry.anchor is not None and entry.anchor.startswith(_PREFIX):
            size = len(entry.anchor) - len(_PREFIX)
            self._prefix_sizes[size] -= 1
            if not self._prefix_sizes[size]:
                del self._prefix_sizes[size]
        if entry.anchor is not None:
            ids = self._index.get(entry.anchor)
            if ids is not None:
                ids.discard(template_id)
                if not ids:
                    del self._index[entry.anchor]

    def _merge(self, entry: _Entry, content: str) -> Merged | None:
        return merge_templates(
            entry.template,
            entry.spans,
            content,
            masker=self.masker,
            values=entry.values,
            max_tokens=self.config.max_generalise_tokens,
        )

    def _widen(self, entry: _Entry, merged: Merged, content: str) -> Match | None:
        """``entry`` replaced by ``merged`` (same id), if that is still a template and still
        matches the line ``entry`` was learned from."""
        if _too_general(merged.template, content):
            return None
        other = self._by_template.get(merged.template)
        if other is not None and other != entry.template_id:  # became an existing one
            target = self._entries[other]
            found = target.regex.match(content)
            return (
                None if found is None else Match(other, target.template, _values(found), "cluster")
            )
        regex = compile_template(merged.template, merged.spans)
        found = regex.match(content)
        if found is None or regex.match(entry.example) is None:
            return None
        self._by_template.pop(entry.template, None)
        self._store(entry.template_id, merged.template, merged.spans, entry.example)
        return Match(entry.template_id, merged.template, _values(found), "cluster")


def _values(found: re.Match[str]) -> tuple[str, ...]:
    return tuple((g or "").strip() for g in found.groups())


def _fresh_id(template: str, taken: Mapping[str, object]) -> str:
    """``T`` + 8 hex of the first template: stable across restarts and replicas."""
    base = "T" + error_signature(template)[1:]
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _spans(template: str, content: str) -> tuple[bool, ...] | None:
    """Per slot of ``template``: whether its value in ``content`` holds blanks (or is an
    empty standalone slot); None when the template does not match the line at all."""
    found = compile_template(template).match(content)
    if found is None:
        return None
    spans: list[bool] = []
    values = iter(found.groups())
    for token in template.split():
        for _ in range(token.count(WILDCARD)):
            value = next(values) or ""
            spans.append(len(value.split()) > 1 or (token == WILDCARD and not value.strip()))
    if spans and compile_template(template, spans).match(content) is None:
        return None
    return tuple(spans)


def _too_general(template: str, content: str) -> bool:
    """A template with no literal letters left, for a line that has some."""
    has_words = re.search(r"[A-Za-z]{2}", template.replace(WILDCARD, " ")) is not None
    return not has_words and re.search(r"[A-Za-z]{2}", content) is not None


@dataclass(frozen=True, slots=True)
class Merged:
    """A template widened to cover one more line. ``changed_words``: the line's tokens
    with letters outside any masked variable that became ``<*>`` (0: only values differ)."""

    template: str
    spans: tuple[bool, ...]
    changed_words: int


def merge_templates(
    template: str,
    spans: Sequence[bool],
    content: str,
    *,
    masker: Masker | None = None,
    values: Sequence[bool] | None = None,
    max_tokens: int = 200,
) -> Merged | None:
    """The narrowest template covering both ``template`` and the line ``content``.

    Literal tokens are aligned (longest common subsequence); between two aligned tokens,
    slots that still fit stay, same-length runs differ token by token (Drain's rule), and
    runs of different lengths become one spanning slot. ``masker`` tells values from
    words, for ``changed_words``; ``values`` marks the template's literal tokens that were
    values in the line it was learned from (a date the model left as it was).
    """
    masker = masker or Masker()
    left = template.split()
    positions = [m.span() for m in re.finditer(r"\S+", content)]
    right = [content[a:b] for a, b in positions]
    if not right or len(left) > max_tokens or len(right) > max_tokens:
        return None
    covered = _coverage(content, positions, masker)
    slot_span = iter(spans)
    marks = list(values) if values is not None and len(values) == len(left) else []
    tokens: list[_Token] = [
        _Token(
            token,
            tuple(next(slot_span, True) for _ in range(token.count(WILDCARD))),
            bool(marks and marks[index]),
        )
        for index, token in enumerate(left)
    ]
    out: list[_Token] = []
    changed = 0
    prev_l = prev_r = 0
    for i, j in [*_align(left, right), (len(left), len(right))]:
        merged, words = _Run(tokens[prev_l:i], right[prev_r:j], masker).merge(covered[prev_r:j])
        out.extend(merged)
        changed += words
        if i < len(left):
            out.append(tokens[i])
        prev_l, prev_r = i + 1, j + 1
    new_spans = tuple(flag for t in out for flag in t.spans)
    return Merged(" ".join(t.text for t in out), new_spans, changed)


def _coverage(line: str, positions: Sequence[tuple[int, int]], masker: Masker) -> list[list[bool]]:
    """Per token of ``line``, per character: inside a masked variable."""
    covered = bytearray(len(line))
    for a, b in masker.spans(line):
        covered[a:b] = b"\x01" * (b - a)
    return [[bool(covered[k]) for k in range(a, b)] for a, b in positions]


def _has_word(text: str, covered: Sequence[bool]) -> bool:
    """Letters outside every masked variable: a word, not a value."""
    return any(c.isalpha() and not hidden for c, hidden in zip(text, covered, strict=True))


def literal_values(template: str, example: str, masker: Masker) -> tuple[bool, ...]:
    """Per template token: True for a literal token that is a value (all its letters, if
    any, inside a masked variable) in ``example``, the line the template came from."""
    tokens = template.split()
    pieces = []
    for index, token in enumerate(tokens):
        body = r"(.*?)" if token == WILDCARD else _token_regex(token)
        pieces.append(f"(?P<t{index}>{body})")
    found = re.match(r"^" + r"\s*".join(pieces) + r"$", " ".join(example.split()))
    if found is None:
        return (False,) * len(tokens)
    line = found.string
    spans = [found.span(f"t{i}") for i in range(len(tokens))]
    covered = _coverage(line, spans, masker)
    return tuple(
        WILDCARD not in token and not _has_word(line[a:b], flags)
        for token, (a, b), flags in zip(tokens, spans, covered, strict=True)
    )


@dataclass(frozen=True, slots=True)
class _Token:
    text: str
    spans: tuple[bool, ...] = ()  # per ``<*>`` in the token: whether it spans blanks
    value: bool = False  # a literal that was a value in the template's example


@dataclass(slots=True)
class _Run:
    """The template tokens and line tokens between two aligned tokens."""

    left: list[_Token]
    right: list[str]
    masker: Masker

    def kept_word(self, token: _Token, text: str) -> bool:
        """Template text with letters outside any variable: a word the model kept."""
        if token.value or WILDCARD in token.text:
            return False
        return re.search(r"[A-Za-z]", self.masker.mask(text)) is not None

    def merge(self, covered: list[list[bool]]) -> tuple[list[_Token], int]:
        """The merged tokens, and how many words (not values) became variables."""
        left, right = self.left, self.right
        if not left and not right:
            return [], 0
        slots = [t.spans[0] for t in left if t.text == WILDCARD]
        if left and len(slots) == len(left):
            narrow = sum(1 for k in slots if not k)
            if (any(slots) and len(right) >= narrow) or len(right) == len(left):
                return left, 0  # the slots already cover the line's tokens
        if len(left) == len(right):
            out: list[_Token] = []
            words = 0
            for token, r, hidden in zip(left, right, covered, strict=True):
                t = token.text
                if t in (r, WILDCARD):
                    out.append(token)
                    continue
                head, tail = _common_ends(t, r, hidden) if WILDCARD not in t else (0, 0)
                out.append(_Token(t[:head] + WILDCARD + t[len(t) - tail :], (False,)))
                kept = self.kept_word(token, t[head : len(t) - tail])
                middle = slice(head, len(r) - tail)
                words += kept or _has_word(r[middle], hidden[middle])
            return out, words
        words = sum(_has_word(r, hidden) for r, hidden in zip(right, covered, strict=True))
        words = max(0, words - len(slots))
        if not right:
            words = sum(1 for t in left if self.kept_word(t, t.text))
        return [_Token(WILDCARD, (True,))], words


def _common_ends(a: str, b: str, hidden: Sequence[bool]) -> tuple[int, int]:
    """The lengths of the common prefix and suffix of template token ``a`` and line token
    ``b``, outside the line's masked variables (``hidden``) and cut back to a boundary
    between a word and punctuation (``onExtend:12`` and ``onExtend:7`` share ``onExtend:``)."""
    head = 0
    limit = min(len(a), len(b))
    while head < limit and a[head] == b[head] and not hidden[head]:
        head += 1
    while head and (a[head - 1 : head].isalnum() and head < len(a) and a[head].isalnum()):
        head -= 1
    tail = 0
    limit -= head
    while tail < limit and a[-1 - tail] == b[-1 - tail] and not hidden[-1 - tail]:
        tail += 1
    while tail and (a[-tail].isalnum() and tail < len(a) and a[-tail - 1].isalnum()):
        tail -= 1
    return head, tail


def _align(left: list[str], right: list[str]) -> list[tuple[int, int]]:
    """Index pairs of the longest common subsequence of the template's literal tokens
    (a token with ``<*>`` inside matches as its regex) and the line's tokens."""
    patterns: list[re.Pattern[str] | str | None] = []
    for token in left:
        if token == WILDCARD:
            patterns.append(None)
        elif WILDCARD in token:
            patterns.append(re.compile(_token_regex(token) + "$"))
        else:
            patterns.append(token)

    def same(i: int, j: int) -> bool:
        p = patterns[i]
        if p is None:
            return False
        return p == right[j] if isinstance(p, str) else p.match(right[j]) is not None

    n, m = len(left), len(right)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            if same(i, j):
                table[i][j] = table[i + 1][j + 1] + 1
            else:
                table[i][j] = max(table[i + 1][j], table[i][j + 1])
    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < n and j < m:
        if same(i, j) and table[i][j] == table[i + 1][j + 1] + 1:
            pairs.append((i, j))
            i += 1
            j += 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs
