"""A raw log line's header: timestamp, level, component, and the message after them.

``HeaderParser`` tries a configured format (a route's ``log_format``), else the built-in
formats in turn, remembering the last one that matched, else a generic fallback that
finds a leading timestamp, level and component. ``LogFormat`` compiles a small format
language (``<Timestamp> <Level> <Component>: <Content>``, as Loghub writes them) into one
anchored regex. Only the first ``HEAD_CHARS`` characters of a line are read by those
regexes, so a very long line costs what a short one does; the rest is message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

HEAD_CHARS = 512  # a header is at most this long; the rest of a line is message
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
        if len(line) > HEAD_CHARS:  # bounded work: the header regexes see the head only
            cut = line.rfind(" ", 0, HEAD_CHARS)
            cut = cut if cut > 0 else HEAD_CHARS
            head = self.parse(line[:cut])
            tail = line[cut:].rstrip()
            return replace(head, content=(head.content + tail) if head.content else tail.lstrip())
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
