"""``logs``: log lines to templates, named parameters, level, component, time and an
error signature; the model is asked once per new template, not once per line.

The header (timestamp, level, component) is parsed locally (a configured format, else
detection). The message goes to the template store (Drain3 clusters plus the model's
templates): a line that fits a template learned for its cluster answers at once
(source=store, tier local). A line that fits none goes to the model, which writes the
template and names the variables; concurrent lines of that cluster wait for the one call
instead of making their own, then fit the learned template. If the model's answer is
unusable (invalid after repair, a refusal, or a template that does not fit the line),
Drain's template of the cluster stands in (source=local): a log line never goes to the
DLQ for that. Every step is bounded (the header regexes read 512 characters, Drain and
the template fit the first 64 tokens), so a line costs well under a millisecond on the
event loop whatever its length (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from typing import Any, ClassVar, cast

from pydantic import Field

from handlers import prompts
from handlers.enrich import Answer, EnrichingHandler, EnrichOptions
from handlers.logs.header import HeaderParser, level_name
from handlers.logs.store import Match, Miss, StoreConfig, TemplateStore
from handlers.logs.templates import error_signature, slot_names
from handlers.model import Reply, Task
from handlers.redact import PLACEHOLDERS
from schemas.enriched import Alert, EnrichedEvent, Severity
from schemas.errors import EventError, SluicegateError
from schemas.events import LogEvent, _Event
from schemas.outputs import LogModelAnswer
from schemas.records import SourceRecord

TASK = Task(name="logs", instructions=prompts.LOGS, output=LogModelAnswer)


class LogOptions(EnrichOptions):
    raw_text: bool = Field(True, description="raw log lines (the usual case) are accepted")
    # IP addresses and phone-like numbers in logs are mostly infrastructure (hosts, ports,
    # ids); hiding them would change the templates. Add "ip" where they identify people.
    redact: tuple[str, ...] = ("secret", "email", "card")
    log_format: str | None = Field(
        None,
        description="a built-in format's name (hdfs, syslog, log4j...) or a format string "
        "such as '<Timestamp> <Level> <Component>: <Content>'; unset: detected per line",
    )
    max_templates: int = Field(10_000, ge=10, description="clusters kept (LRU)")
    alert_on: tuple[str, ...] | None = Field(
        None, description="levels that also go to the alerts topic; default: critical"
    )
    burst_threshold: int = Field(
        50, ge=0, description="error lines of one component within the window that make "
        "an error burst alert; 0: off"
    )  # fmt: skip
    burst_window_s: float = Field(60.0, gt=0, description="the error burst window")


class LogsHandler(EnrichingHandler):
    name = "logs"
    Options = LogOptions
    options: LogOptions
    kind = LogEvent
    default_threshold: ClassVar[float | None] = 1.0  # the template store is exact
    default_alerts: ClassVar[tuple[str, ...]] = ("critical",)
    local_answers_now = True
    static_heuristic: ClassVar[bool] = False  # exact: answers on its own
    learns: ClassVar[bool] = False  # the template store is the learned tier of logs

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fmt = self.options.log_format
        self.parser = HeaderParser.from_spec(fmt) if fmt else HeaderParser()
        self.store = TemplateStore(StoreConfig(max_clusters=self.options.max_templates))
        self._asking: dict[int, asyncio.Future[None]] = {}  # cluster -> the call under way
        # What the model said of a template that its later lines, answered locally, reuse:
        # template id -> (parameter names, level, component).
        self._learned: dict[str, tuple[tuple[str, ...], str | None, str | None]] = {}
        self.model_calls = 0
        self.bursts = BurstDetector(self.options.burst_threshold, self.options.burst_window_s)

    def make_task(self) -> Task:
        return TASK

    def alerts_for(
        self, record: SourceRecord, answer: Answer, enriched: EnrichedEvent
    ) -> list[Alert]:
        fields = answer.fields
        level, component = fields["level"], fields["component"] or "unknown"
        alerts = []
        if level in self.alert_labels:
            # One incident per template and component a minute, however many lines.
            minute = int(time.time() // 60)
            key = f"logs.level:{self.context.route}:{component}:{fields['template_id']}:{minute}"
            severity: Severity = "critical" if level == "critical" else "warning"
            alerts.append(self.alert("logs.level", severity, key, f"logs: {level}",
                                     record=record, enriched=enriched,
                                     template=fields["template"]))  # fmt: skip
        if level in _ERRORS - {"warning"}:
            burst = self.bursts.record(component, time.monotonic())
            if burst is not None:
                count, started = burst
                window = self.options.burst_window_s
                alerts.append(self.alert(
                    "logs.error_burst", "critical",
                    f"logs.error_burst:{self.context.route}:{component}:{int(started)}",
                    f"logs: {count} errors from {component} within {window:g}s",
                    record=record, enriched=enriched, component=component, errors=count,
                    window_s=window,
                ))  # fmt: skip
        return alerts

    def try_now(self, record: SourceRecord) -> Any:
        started = time.perf_counter()
        original, event = self.decode(record)
        header = self._header(event)
        hit = self.store.lookup(header["content"])
        if isinstance(hit, Miss):
            return None
        return self._local(record, original, self._answer(header, hit), started)

    async def handle(self, record: SourceRecord) -> Any:
        started = time.perf_counter()
        original, event = self.decode(record)
        header = self._header(event)
        content = header["content"]
        found = self.store.lookup(content)
        while isinstance(found, Miss) and found.cluster in self._asking:
            await asyncio.shield(self._asking[found.cluster])  # one call per new cluster
            found = self.store.lookup(content)
        if isinstance(found, Match):
            return self._local(record, original, self._answer(header, found), started)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._asking[found.cluster] = done
        try:
            head, _ = self.store.split(content)  # the model sees what the store examines
            redacted = self.redactor.redact(head)
            reply = await self._ask(redacted.text)
        finally:
            del self._asking[found.cluster]
            done.set_result(None)
        if reply is None:  # the model's answer was unusable: Drain's template stands in
            hit = self.store.learn(content, None, found.cluster)
            return self._local(record, original, self._answer(header, hit), started)
        output = LogModelAnswer.model_validate(reply.output.model_dump())
        template = output.template
        for placeholder in PLACEHOLDERS.values():  # redacted values are variables too
            template = template.replace(placeholder, "<*>")
        hit = self.store.learn(content, template, found.cluster)
        names = tuple(p.name for p in output.parameters)
        level = None if output.level.value == "unknown" else output.level.value
        component = output.component if output.component not in {"", "unknown"} else None
        self._learned[hit.template_id] = (names, level, component)
        if len(self._learned) > 2 * self.options.max_templates:  # forget the oldest
            del self._learned[next(iter(self._learned))]
        answer = self._answer(header, hit)
        return self._wrap(
            record,
            original,
            answer,
            reply=reply,
            started=started,
            redactions=redacted.counts,
            escalated=False,
        )

    async def _ask(self, text: str) -> Reply | None:
        model = self.context.require_model(self.name)
        self.model_calls += 1
        try:
            return await model.ask(TASK, text, route=self.context.route, batch=self.options.batch)
        except EventError:
            return None  # invalid after the repair attempt, or refused
        except SluicegateError as exc:
            if getattr(exc, "local_only", False):
                return None  # the budget is spent: local templates only
            raise

    def _header(self, decoded: _Event) -> dict[str, Any]:
        """The line's parts: the shipper's fields first, then what the header says."""
        event = cast("LogEvent", decoded)  # ``kind`` is LogEvent
        parsed = self.parser.parse(event.message)
        return {
            "content": parsed.content or event.message.strip(),
            "timestamp": event.timestamp or parsed.timestamp,
            "level": _level(event.level) or parsed.level,
            "component": event.service or parsed.component,
        }

    def _answer(self, header: dict[str, Any], hit: Match) -> Answer:
        names, level, component = self._learned.get(hit.template_id, ((), None, None))
        if len(names) != len(hit.params):  # widened since, or learned locally
            names = slot_names(hit.template)
        params: dict[str, str] = {}
        for name, value in zip(names, hit.params, strict=True):
            key, n = name, 2
            while key in params:
                key, n = f"{name}_{n}", n + 1
            params[key] = value
        level = header["level"] or level or "unknown"
        fields = {
            "template": hit.template,
            "template_id": hit.template_id,
            "template_source": hit.source,
            "parameters": params,
            "level": level,
            "component": header["component"] or component,
            "timestamp": header["timestamp"],
            "error_signature": error_signature(hit.template) if level in _ERRORS else None,
        }
        return Answer(fields, 1.0 if hit.source != "model" else None)


_ERRORS = frozenset({"warning", "error", "critical"})


class BurstDetector:
    """Error lines per component in a sliding window. ``record`` returns ``(count,
    incident start)`` once when a component's count reaches the threshold; it re-arms when
    the count falls to half of it, so one burst is one alert, not one per line."""

    def __init__(self, threshold: int, window_s: float, max_components: int = 10_000) -> None:
        self.threshold, self.window_s, self.max_components = threshold, window_s, max_components
        self._times: OrderedDict[str, deque[float]] = OrderedDict()
        self._firing: dict[str, float] = {}

    def record(self, component: str, now: float) -> tuple[int, float] | None:
        if self.threshold <= 0:
            return None
        times = self._times.get(component)
        if times is None:
            times = self._times[component] = deque()
            if len(self._times) > self.max_components:
                old, _ = self._times.popitem(last=False)
                self._firing.pop(old, None)
        self._times.move_to_end(component)
        times.append(now)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if component in self._firing:
            if len(times) <= self.threshold // 2:
                del self._firing[component]
            return None
        if len(times) >= self.threshold:
            self._firing[component] = now
            return len(times), time.time()
        return None


def _level(raw: str | None) -> str | None:
    return level_name(raw) if raw else None
