"""Log templates, locally: headers, masks, the template store and its model-call economy."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence

import pytest

from handlers.logtemplates import (
    BUILTIN_FORMATS,
    WILDCARD,
    HeaderParser,
    LogFormat,
    Masker,
    Match,
    MinerConfig,
    Miss,
    TemplateMiner,
    detect_format,
    error_signature,
    iso_timestamp,
    merge_templates,
    normalize_template,
    template_params,
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


# -- masks and templates ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("Receiving block blk_-1608 src: /10.250.19.102:54106", "Receiving block <*> src: <*>"),
        ("GET https://x.io/a?b=1 took 12 ms", "GET <*> took <*>"),
        ("open /etc/httpd/conf/workers2.properties ok", "open <*> ok"),
        ("session 0x14ed93111f20027 id 3f2504e0-4f89-11d3-9a0c-0305e82c3301", "session <*> id <*>"),
        ("close, 1268 bytes (1.23 KB) sent, lifetime <1 sec", "close, <*> sent, lifetime <*>"),
        ("Failed password for root from 1.2.3.4 port 22 ssh2", "Failed password for <*> from <*> port <*> ssh2"),  # noqa: E501
        ("check pass; user unknown", "check pass; user unknown"),
        ("logname= uid=0 rhost=host.example.om user=news", "logname= uid=<*> rhost=<*> user=<*>"),
    ],
)  # fmt: skip
def test_masks(line: str, masked: str) -> None:
    assert Masker().mask(line) == masked


def test_mask_runs_of_values_become_one_for_clustering() -> None:
    line = "ask 10.0.0.1:50010 to delete blk_1 blk_2 blk_3"
    assert Masker().mask(line) == "ask <*> to delete <*> <*> <*>"
    assert Masker().mask(line, runs=True) == "ask <*> to delete <*>"
    assert Masker().mask("onExtend:15140 14 0 4", runs=True) == "onExtend:<*> <*>"


def test_template_params_and_signature() -> None:
    template = "Failed password for <*> from <*> port <*> ssh2"
    line = "Failed password for root from 1.2.3.4 port 22 ssh2"
    assert template_params(template, line) == ("root", "1.2.3.4", "22")
    assert template_params(template, "something else") is None
    assert template_params("uid=<*> tty=<*>", "uid= tty=ssh") == ("", "ssh")
    assert template_params("took <*>", "took <1 sec") == ("<1 sec",)
    assert normalize_template("a  < * >   b {}") == "a <*> b <*>"
    signature = error_signature(template)
    assert re.fullmatch(r"E[0-9a-f]{8}", signature)
    assert signature == error_signature(template.replace(" ", "  "))
    assert signature != error_signature("Accepted password for <*> from <*> port <*> ssh2")


def test_merge_keeps_literals_and_tells_words_from_values() -> None:
    values = merge_templates("Found block rdd_1 locally", (), "Found block rdd_7 locally")
    assert values is not None
    assert (values.template, values.changed_words) == ("Found block <*> locally", 0)
    words = merge_templates("Changing view acls", (), "Changing modify acls")
    assert words is not None
    assert (words.template, words.changed_words) == ("Changing <*> acls", 1)
    longer = merge_templates("lifetime <*>", (False,), "lifetime <1 sec")
    assert longer is not None
    assert (longer.template, longer.spans, longer.changed_words) == ("lifetime <*>", (True,), 0)
    inner = merge_templates("onExtend:151 14", (), "onExtend:152 3")
    assert inner is not None
    assert inner.template == "onExtend:<*> <*>"


# -- the template miner -------------------------------------------------------------------


def _ask(miner: TemplateMiner, line: str, model: Callable[[str], str | None]) -> Match:
    found = miner.lookup(line)
    if isinstance(found, Miss):
        return miner.learn(line, model(line), found.cluster)
    return found


def test_one_model_call_per_new_template() -> None:
    miner = TemplateMiner()
    first = miner.lookup("Received block blk_1 of size 67108864 from /10.0.0.1")
    assert isinstance(first, Miss)
    assert not first.doubt
    assert first.local_template == "Received block <*> of size <*> from <*>"
    learned = miner.learn(
        "Received block blk_1 of size 67108864 from /10.0.0.1",
        "Received block <*> of size <*> from <*>",
        first.cluster,
    )
    assert learned.source == "model"
    assert learned.params == ("blk_1", "67108864", "/10.0.0.1")
    again = miner.lookup("Received block blk_9 of size 12 from /10.0.0.2")
    assert again == Match(
        learned.template_id,
        "Received block <*> of size <*> from <*>",
        ("blk_9", "12", "/10.0.0.2"),
        "store",
    )
    assert miner.match("Received block blk_9 of size 12 from /10.0.0.2") == again
    assert miner.match("Deleting block blk_9") is None
    assert again.signature == error_signature(again.template)


def test_a_too_specific_model_template_is_widened_in_its_cluster_without_a_call() -> None:
    miner = TemplateMiner()
    line = "Found block rdd_42_20 locally in 12 ms"
    miss = miner.lookup(line)
    assert isinstance(miss, Miss)
    learned = miner.learn(line, "Found block rdd_42_20 locally in <*> ms", miss.cluster)
    widened = miner.lookup("Found block rdd_7_1 locally in 3 ms")
    assert isinstance(widened, Match)
    assert widened.source == "cluster"
    assert widened.template_id == learned.template_id
    assert widened.template == "Found block <*> locally in <*> ms"
    assert miner.template(learned.template_id) == widened.template
    assert len(miner) == 1


def test_a_word_difference_in_a_known_cluster_is_the_models_call() -> None:
    """``startup`` vs ``shutdown`` share a Drain cluster; the model tells two events apart,
    or one event with a variable (then the stored template is widened, same id)."""
    miner = TemplateMiner()
    up = _ask(miner, "cupsd startup succeeded", lambda line: line)
    down_miss = miner.lookup("cupsd shutdown succeeded")
    assert isinstance(down_miss, Miss)
    assert down_miss.doubt
    down = miner.learn("cupsd shutdown succeeded", "cupsd shutdown succeeded", down_miss.cluster)
    assert down.template_id != up.template_id
    user_miss = miner.lookup("session closed for user cyrus")
    assert isinstance(user_miss, Miss)
    cyrus = miner.learn(
        "session closed for user cyrus", "session closed for user cyrus", user_miss.cluster
    )
    assert cyrus.template == "session closed for user cyrus"
    again = miner.lookup("session closed for user news")  # masked as an account: a value
    assert isinstance(again, Match)
    assert (again.template_id, again.template) == (
        cyrus.template_id,
        "session closed for user <*>",
    )


def test_the_model_saying_same_event_widens_the_stored_template() -> None:
    miner = TemplateMiner()
    first = _ask(miner, "Changing view acls to: yarn", lambda line: line)
    miss = miner.lookup("Changing modify acls to: yarn")
    assert isinstance(miss, Miss)
    assert miss.doubt
    same = miner.learn("Changing modify acls to: yarn", "Changing <*> acls to: <*>", miss.cluster)
    assert same.template_id == first.template_id
    assert same.source == "model"
    assert same.template == "Changing <*> acls to: yarn"
    assert len(miner) == 1


def test_doubts_per_cluster_are_capped() -> None:
    miner = TemplateMiner(MinerConfig(max_doubts=1))
    _ask(miner, "driver hub registered ok", lambda line: line)
    assert isinstance(miner.lookup("driver usbfs registered ok"), Miss)
    local = miner.lookup("driver serial registered ok")
    assert isinstance(local, Match)  # no more model calls for this cluster
    assert local.template == "driver <*> registered ok"


@pytest.mark.parametrize(
    "answer",
    [None, "", "completely different text", "<*> <*> <*>", "<*>"],
)
def test_unusable_model_templates_fall_back_to_the_masked_line(answer: str | None) -> None:
    miner = TemplateMiner()
    line = "Deleting block blk_5 file /data/blk_5"
    miss = miner.lookup(line)
    assert isinstance(miss, Miss)
    learned = miner.learn(line, answer, miss.cluster)
    assert (learned.source, learned.template) == ("local", "Deleting block <*> file <*>")
    assert learned.params == ("blk_5", "/data/blk_5")


def test_learning_what_is_already_known_returns_the_known_template() -> None:
    """Two events of one new kind raced to the model: the second answer changes nothing."""
    miner = TemplateMiner()
    a = _ask(miner, "job 1 done in 5 s", lambda _: "job <*> done in <*>")
    b = miner.learn("job 2 done in 7 s", "job <*> done in <*> s")
    assert b.template_id == a.template_id
    assert b.source == "store"
    assert len(miner) == 1


def test_model_slots_that_span_tokens_are_kept() -> None:
    miner = TemplateMiner()
    line = "close, 1268 bytes (1.23 KB) sent, lifetime <1 sec"
    learned = miner.learn(line, "close, <*> sent, lifetime <*>")
    assert learned.params == ("1268 bytes (1.23 KB)", "<1 sec")
    hit = miner.match("close, 0 bytes sent, lifetime 00:01")
    assert hit is not None
    assert hit.params == ("0 bytes", "00:01")
    inside = miner.learn("stored (size 5.2 KB, free 17 MB)", "stored (size <*>, free <*>)")
    assert inside.params == ("5.2 KB", "17 MB")
    assert miner.match("stored (size 384 B, free 3 GB)") is not None
    token_slot = miner.learn("port 22 open", "port <*> open")
    assert miner.match("port 22 23 open") is None  # a one-token slot stays one token
    assert token_slot.template == "port <*> open"


def test_memory_is_bounded() -> None:
    miner = TemplateMiner(MinerConfig(max_templates=3, max_clusters=4))
    ids = [miner.learn(f"event{i} happened", f"event{i} happened").template_id for i in range(6)]
    assert len(miner) == 3
    assert list(miner.templates()) == ids[3:]
    assert miner.template(ids[0]) is None
    assert miner.match("event0 happened") is None
    for i in range(20):
        miner.lookup(f"kind{i} of thing number {i}")
    assert len(miner._clusters) <= 4  # the bound is the point


def test_without_drain_clusters_are_masked_lines() -> None:
    miner = TemplateMiner(MinerConfig(use_drain=False))
    assert miner._drain is None
    line = "Verification succeeded for blk_1"
    miss = miner.lookup(line)
    assert isinstance(miss, Miss)
    learned = miner.learn(line, "Verification succeeded for blk_1", miss.cluster)
    widened = miner.lookup("Verification succeeded for blk_2")
    assert isinstance(widened, Match)
    assert (widened.template_id, widened.template) == (
        learned.template_id,
        "Verification succeeded for <*>",
    )


# -- a small stream: grouping accuracy and calls ------------------------------------------

EVENTS = (
    "Received block {blk} of size {n} from /{ip}",
    "PacketResponder {k} for block {blk} terminating",
    "Deleting block {blk} file /data/{n}/{blk}",
    "Failed password for {user} from {ip} port {port} ssh2",
    "Failed password for invalid user {user} from {ip} port {port} ssh2",
    "Failed none for invalid user {user} from {ip} port {port} ssh2",
    "session opened for user {user} by (uid={k})",
    "session closed for user {user}",
    "Connection closed by {ip} [preauth]",
    "Times: total = {n}, boot = {k}, init = {n}, finish = {k}",
    "Running task {k}.0 in stage {k}.0 (TID {n})",
    "cupsd startup succeeded",
    "cupsd shutdown succeeded",
    "{host}:{port} open through proxy {host}:{port} HTTPS",
    "{host}:{port} close, {size} sent, {size} received, lifetime {life}",
)


def _value(kind: str, rng: random.Random) -> str:
    users = ["root", "admin", "test", "oracle", "guest", "news", "cyrus"]
    sizes = ["0 bytes", "403 bytes", "1268 bytes (1.23 KB)", "29322 bytes (28.6 KB)"]
    choices: dict[str, Callable[[], str]] = {
        "blk": lambda: f"blk_{rng.choice(['', '-'])}{rng.randrange(10**12)}",
        "n": lambda: str(rng.randrange(1, 10**6)),
        "k": lambda: str(rng.randrange(0, 9)),
        "ip": lambda: ".".join(str(rng.randrange(1, 255)) for _ in range(4)),
        "port": lambda: str(rng.randrange(1024, 65535)),
        "user": lambda: rng.choice(users),
        "host": lambda: rng.choice(["proxy.cse.example.com", "www.baidu.com", "x.qq.com"]),
        "size": lambda: rng.choice(sizes),
        "life": lambda: rng.choice(["<1 sec", "00:01", "02:13"]),
    }
    return choices[kind]()


def _stream(n: int, seed: int) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    weights = [rng.randrange(1, 30) for _ in EVENTS]
    out = []
    for _ in range(n):
        event = rng.choices(range(len(EVENTS)), weights)[0]
        line = re.sub(r"\{(\w+)\}", lambda m: _value(m.group(1), rng), EVENTS[event])
        out.append((event, line))
    return out


def _grouping_accuracy(predicted: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    pred: dict[Hashable, set[int]] = defaultdict(set)
    true: dict[Hashable, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        pred[p].add(i)
        true[t].add(i)
    right = sum(pred[p] == true[t] for p, t in zip(predicted, truth, strict=True))
    return right / len(truth)


def _literal_model(line: str) -> str:
    """A poor model: numbers become ``<*>``, everything else stays as it is."""
    return re.sub(r"(?<![\w.])\d+(?![\w])", WILDCARD, line)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stream_groups_exactly_with_about_one_call_per_template(seed: int) -> None:
    lines = _stream(1500, seed)
    miner = TemplateMiner()
    calls = 0
    ids = []
    for _, line in lines:
        found = miner.lookup(line)
        if isinstance(found, Miss):
            calls += 1
            found = miner.learn(line, _literal_model(line), found.cluster)
        ids.append(found.template_id)
    distinct = len({event for event, _ in lines})
    assert _grouping_accuracy(ids, [event for event, _ in lines]) == 1.0
    assert calls <= 1.2 * distinct
