"""Header parsing of raw log lines: built-in formats, detection, fallback, timestamps."""

from __future__ import annotations

import pytest

from handlers.logs.header import (
    BUILTIN_FORMATS,
    HEAD_CHARS,
    HeaderParser,
    LogFormat,
    detect_format,
    iso_timestamp,
)

# -- headers ------------------------------------------------------------------------------

LINES = {
    "hdfs": "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 done",
    "log4j": "17/06/09 20:10:40 WARN executor.Backend: Registered signal handlers",
    "zookeeper": "2015-07-29 17:41:44,747 - WARN  [Peer[myid=1]/0:0:2181:Election@774] - time out",
    "apache_error": "[Sun Dec 04 04:47:44 2005] [error] mod_jk child in error state 6",
    "syslog": "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
    "pipe": "20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579",
    "bracket_program": "[10.30 16:49:06] chrome.exe *64 - www.a.com:80 open through proxy",
    "logback": "2024-03-01 12:00:00.123 [main] ERROR com.shop.Cart - checkout failed",
}


@pytest.mark.parametrize(("name", "line"), sorted(LINES.items()))
def test_builtin_formats_split_header_from_content(name: str, line: str) -> None:
    header = HeaderParser(year=2005).parse(line)
    assert header.format == name
    assert header.timestamp is not None
    assert header.timestamp[:4].isdigit()
    assert header.content
    assert header.content in line


def test_header_fields_are_normalised() -> None:
    parser = HeaderParser(year=2005)
    syslog = parser.parse(LINES["syslog"])
    assert (syslog.timestamp, syslog.component, syslog.fields["Pid"]) == (
        "2005-12-10T06:55:46",
        "sshd",
        "24200",
    )
    assert syslog.content == "Invalid user webmaster from 173.234.31.186"
    zoo = parser.parse(LINES["zookeeper"])
    assert (zoo.level, zoo.component, zoo.content) == ("warning", "Election", "time out")
    assert zoo.timestamp == "2015-07-29T17:41:44.747"
    apache = parser.parse(LINES["apache_error"])
    assert (apache.level, apache.component) == ("error", None)


def test_detection_sticks_to_the_stream_format_without_misreading_others() -> None:
    """The last format that matched is tried first; a log4j line after syslog lines must
    not be read as syslog with its level as the host."""
    parser = HeaderParser(year=2005)
    for _ in range(3):
        parser.parse(LINES["syslog"])
    log4j = parser.parse(LINES["log4j"])
    assert (log4j.format, log4j.level, log4j.component) == ("log4j", "warning", "executor.Backend")


def test_fallback_finds_timestamp_level_and_component() -> None:
    header = HeaderParser().parse("2026-05-04T10:00:01Z | ERROR | api: upstream timed out")
    assert header.format is None
    assert (header.timestamp, header.level, header.component, header.content) == (
        "2026-05-04T10:00:01Z",
        "error",
        "api",
        "upstream timed out",
    )
    bare = HeaderParser().parse("pam_unix(sshd:auth): check pass; user unknown")
    assert bare == type(bare)(content="pam_unix(sshd:auth): check pass; user unknown")


def test_a_configured_format_string_or_name() -> None:
    parser = HeaderParser.from_spec("<Timestamp> <Level> <Component> | <Content>")
    header = parser.parse("2024-01-02 03:04:05 INFO billing | charged 12 EUR")
    assert (header.component, header.content, header.format) == (
        "billing",
        "charged 12 EUR",
        "configured",
    )
    assert HeaderParser.from_spec("syslog").formats[0].name == "syslog"
    with pytest.raises(ValueError, match="Content"):
        LogFormat("bad", "<Timestamp> <Level>")


def test_detect_format_from_a_sample() -> None:
    sample = [LINES["pipe"], LINES["pipe"].replace("3579", "12"), "junk"]
    found = detect_format(sample)
    assert found is not None
    assert found.name == "pipe"
    assert detect_format(["no header here"]) is None
    assert len({fmt.name for fmt in BUILTIN_FORMATS}) == len(BUILTIN_FORMATS)


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        ("081109 203615", "2008-11-09T20:36:15"),
        ("Sun Dec 04 04:47:44 2005", "2005-12-04T04:47:44"),
        ("Jul  3 04:08:03", "2005-07-03T04:08:03"),
        ("2015-07-29 17:41:44,747", "2015-07-29T17:41:44.747"),
        ("17/06/09 20:10:40", "2017-06-09T20:10:40"),
        ("20171224-0:3:25:14", "2017-12-24T00:03:25.014"),
        ("10/Oct/2000:13:55:36 -0700", "2000-10-10T13:55:36-07:00"),
        ("2026-05-04T10:00:01Z", "2026-05-04T10:00:01Z"),
        ("Feb 29 10:00:00", None),  # not a day of 2005
        ("yesterday", None),
    ],
)
def test_iso_timestamps(raw: str, iso: str | None) -> None:
    assert iso_timestamp(raw, year=2005) == iso


def test_a_long_line_reads_its_header_from_the_head_only() -> None:
    """A line far longer than a header still splits the same, and keeps all its message."""
    tail = " ".join(f"word{i}" for i in range(20_000))
    line = LINES["syslog"] + " " + tail
    header = HeaderParser(year=2005).parse(line)
    assert len(line) > 100 * HEAD_CHARS
    assert (header.format, header.component) == ("syslog", "sshd")
    assert header.content == "Invalid user webmaster from 173.234.31.186 " + tail
