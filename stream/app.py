"""``sluicegate run``: the processor as a process, with signals and exit codes."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from stream import __version__
from stream.cli.commands import EXIT_UNAVAILABLE
from stream.config import Settings
from stream.dlq import DEFAULT_MAX_RECORD_BYTES
from stream.errors import ConfigError
from stream.kafka.admin import (
    check_client_options,
    check_reachable,
    record_limit_problems,
    topic_limits,
)
from stream.model.cost import check_prices
from stream.model.errors import ModelUnreachable
from stream.model.service import ModelService
from stream.routes import build_routes, needs_model
from stream.runtime.processor import Processor
from stream.telemetry import logs, metrics

log = logging.getLogger("sluicegate")


async def serve(settings: Settings) -> Processor:
    """Run until SIGTERM/SIGINT (graceful: drain, commit, close) or a fatal error."""
    check_prices(settings)  # the same validation as `config check`
    check_client_options(settings.kafka)
    service = ModelService(settings) if needs_model(settings) else None
    if service is not None:
        try:
            await service.client.probe()  # a wrong address or key stops here, exit 3
        except BaseException:
            await service.aclose()
            raise
    handlers = {r.settings.name: r.handler for r in build_routes(settings, model=service)}
    processor = Processor(
        settings,
        handlers,
        model=service,
        pause_while=[service.should_pause] if service is not None else [],
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, processor.stop)
    await loop.run_in_executor(None, check_reachable, settings.kafka)
    for problem in await loop.run_in_executor(None, check_topics, settings):
        log.warning("%s", problem)
    log.info(
        "sluicegate %s starting: %d route(s), %s, group %s",
        __version__,
        len(settings.routes),
        settings.processing.guarantee,
        settings.kafka.group_id,
    )
    try:
        async with metrics.serving(settings.metrics, processor, service, handlers) as port:
            if port is not None:
                log.info("metrics on http://%s:%d/metrics", settings.metrics.host, port)
            await processor.run()
    finally:
        if service is not None:
            await service.aclose()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        log.info("sluicegate stopped: %s", processor.stats)
    return processor


def check_topics(settings: Settings) -> list[str]:
    """Warnings about the topics before the start: missing outputs, and record limits
    under which a large input could not reach the DLQ whole (each names the setting)."""
    routes = settings.routes
    inputs = {t for r in routes for t in r.input_topics}
    outputs = {r.output_topic for r in routes} | {settings.alerts.topic}
    dlq = settings.dlq.topic
    limits = topic_limits(settings.kafka, inputs | outputs | {dlq})
    missing = sorted(t for t in outputs | {dlq} if t not in limits)
    problems = [
        f"topic {t!r} does not exist; unless the broker creates topics on first write "
        "(auto.create.topics.enable), the processor stops at the first output to it"
        for t in missing
    ]
    producer = settings.kafka.producer_extra.get("message.max.bytes", DEFAULT_MAX_RECORD_BYTES)
    found = {t: limits[t] for t in inputs if t in limits}
    problems += record_limit_problems(
        found, {t: limits[t] for t in outputs if t in limits}, (dlq, limits.get(dlq)),
        int(producer),
    )  # fmt: skip
    return problems


def run_processor(settings: Settings) -> int:
    if not settings.routes:
        raise ConfigError("routes: no route is configured; add at least one [[routes]] table")
    logs.configure(settings.log)
    try:
        asyncio.run(serve(settings))
    except ModelUnreachable as exc:
        print(f"sluicegate: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return 0
