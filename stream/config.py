"""One frozen settings object, from a TOML file and ``SLUICEGATE_*`` environment variables.

Precedence, highest first: keyword arguments, environment, the file, the defaults.
Nested keys use ``__`` in the environment: ``kafka.bootstrap_servers`` is
``SLUICEGATE_KAFKA__BOOTSTRAP_SERVERS``; list values (``routes``) take JSON there.
Every problem is reported at start-up as a ``ConfigError`` naming the key, the value and
what is accepted, before anything connects anywhere.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from stream import secrets
from stream.errors import ConfigError

ENV_PREFIX = "SLUICEGATE_"
ENV_DELIMITER = "__"
CONFIG_ENV = "SLUICEGATE_CONFIG"
# Variables read by the project's tools (the local broker launcher, the benchmarks),
# not settings: never reported as misspelt.
TOOL_ENV_VARS = frozenset(
    {
        CONFIG_ENV,
        "SLUICEGATE_CACHE_DIR",
        "SLUICEGATE_KAFKA_VERSION",
        "SLUICEGATE_KAFKA_LOG4J_VERSION",
        "SLUICEGATE_KAFKA_HEAP",
        "SLUICEGATE_KAFKA_STATE_DIR",
        "SLUICEGATE_BENCH_KEEP",
    }
)

LibrdkafkaValue = str | int | float | bool
Ordering = Literal["unordered", "key", "partition"]
Guarantee = Literal["at-least-once", "exactly-once"]
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _env_secret(name: str) -> SecretStr | None:
    value = os.environ.get(name)
    return SecretStr(value) if value else None


class KafkaSettings(_Section):
    """How to reach the cluster. Raw librdkafka options pass through the ``*_extra`` maps."""

    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "sluicegate"
    client_id: str = "sluicegate"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    consumer_extra: dict[str, LibrdkafkaValue] = Field(default_factory=dict)
    producer_extra: dict[str, LibrdkafkaValue] = Field(default_factory=dict)

    def client_config(self) -> dict[str, LibrdkafkaValue]:
        """librdkafka settings shared by every client, secrets revealed (never log this)."""
        conf: dict[str, LibrdkafkaValue] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        optional: dict[str, str | SecretStr | None] = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password,
        }
        for key, value in optional.items():
            if value is not None:
                conf[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
        return conf

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError(
                f"security_protocol={self.security_protocol} needs kafka.sasl_mechanism "
                "(one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)"
            )
        return self


class RouteSettings(_Section):
    """One input stream: which topics, which handler, where the results go."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    input_topics: tuple[str, ...] = Field(min_length=1)
    handler: str = "echo"
    output_topic: str
    ordering: Ordering = "key"
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("input_topics", "output_topic")
    @classmethod
    def _topic_names(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for topic in (value,) if isinstance(value, str) else value:
            if not _TOPIC.match(topic):
                raise ValueError(
                    f"{topic!r} is not a Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)"
                )
        return value


class ProcessingSettings(_Section):
    """Delivery guarantee, in-flight bounds (backpressure) and commit cadence."""

    guarantee: Guarantee = "at-least-once"
    # Events held in memory (received, not yet committed). The per-partition bound must
    # stay well above max_poll_records, or every poll pauses a partition, and a pause
    # makes librdkafka drop and refetch what it had prefetched.
    max_in_flight: PositiveInt = 10000
    max_in_flight_per_partition: PositiveInt = 4000
    resume_ratio: float = Field(0.5, gt=0, lt=1)
    commit_interval_ms: PositiveInt = 1000
    shutdown_timeout_s: PositiveFloat = 30.0
    # A partition with events in flight and none finished for this long is stuck: the
    # watchdog fails /readyz, sets sluicegate_partition_stalled and logs which one.
    stall_timeout_s: PositiveFloat = 120.0
    # The learned local tier's warm state: each learning route's student is written to
    # the compacted topic <group_id>.<route>.student this often (seconds) and at
    # shutdown, and read back at start (stream/learn/snapshot.py); 0: never written/read.
    student_snapshot_s: float = Field(60.0, ge=0)
    transaction_timeout_ms: PositiveInt = 60000
    # Exactly-once only. Keep it stable across restarts of one replica (a StatefulSet
    # pod name, say) so a restart fences its predecessor and aborts its open transaction
    # at once; default: "<group_id>-<hostname>".
    transactional_id: str | None = None
    max_poll_records: PositiveInt = 500

    @model_validator(mode="after")
    def _bounds_fit(self) -> ProcessingSettings:
        if self.max_in_flight_per_partition < 2 * self.max_poll_records:
            raise ValueError(
                f"max_in_flight_per_partition ({self.max_in_flight_per_partition}) must be at "
                f"least twice max_poll_records ({self.max_poll_records}), or partitions pause "
                "after every poll"
            )
        return self


class DlqSettings(_Section):
    """The dead-letter topic, and the cap that stops a broken deploy from draining into it."""

    topic: str = "sluicegate.dlq"
    max_ratio: float = Field(0.5, gt=0, le=1)
    window: PositiveInt = 1000
    min_events: PositiveInt = 100
    max_consecutive: PositiveInt = 1000


class AlertsSettings(_Section):
    topic: str = "sluicegate.alerts"


class ModelSettings(_Section):
    """The OpenAI-compatible endpoint. ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` apply when
    the ``model.*`` keys are unset, as with the official SDK."""

    model: str = "gpt-5.4-nano"
    # The free moderation endpoint, for moderation routes with moderations_endpoint on.
    moderation_model: str = "omni-moderation-latest"
    base_url: str | None = Field(default_factory=lambda: os.environ.get("OPENAI_BASE_URL"))
    api_key: SecretStr | None = Field(default_factory=lambda: _env_secret("OPENAI_API_KEY"))
    timeout_s: PositiveFloat = 20.0
    # auto: json_schema (strict structured output), and where the endpoint refuses it,
    # json_object_schema (json_object with a "schema" key, as llama-cpp-python takes it),
    # then json_object (the schema travels in the system prompt); validation is the same.
    output_mode: Literal["auto", "json_schema", "json_object_schema", "json_object"] = "auto"
    max_completion_tokens: PositiveInt = 1024
    # The model's context window in tokens; unset: learned from the server's first
    # context-length error. A batch that does not fit is split, a lone event goes to the DLQ.
    context_tokens: PositiveInt | None = None
    # Also send max_tokens, set to the same limit (servers such as llama.cpp's read it
    # instead of max_completion_tokens). auto: yes unless base_url is unset or its host is
    # api.openai.com, which refuses max_tokens for its reasoning models.
    send_max_tokens: bool | Literal["auto"] = "auto"
    # The account's limits; a replica takes its share (ModelClient.set_share); 0 = none.
    rpm: int = Field(5000, ge=0)
    tpm: int = Field(2_000_000, ge=0)
    min_concurrency: PositiveInt = 1
    max_concurrency: PositiveInt = 64
    initial_concurrency: PositiveInt = 8
    # Transient failures (429, 5xx, timeouts) are retried here, honouring retry-after;
    # the SDK's own retries are off so that every attempt passes through the limits.
    max_attempts: PositiveInt = 4
    breaker_threshold: PositiveInt = 5
    breaker_cooldown_s: PositiveFloat = 5.0
    # Each failed probe doubles the cooldown up to this (at least breaker_cooldown_s): it
    # bounds how long after the endpoint's return the processor waits to find out.
    breaker_max_cooldown_s: PositiveFloat = 10.0
    # Micro-batching (switch it off per route with the handler option batching = false).
    batch_max_events: PositiveInt = 16
    batch_max_tokens: PositiveInt = 6000
    batch_wait_ms: float = Field(5.0, ge=0)
    # A batch goes out before batch_wait_ms once no new ask came for this long; 0: wait.
    batch_idle_ms: float = Field(1.0, ge=0)
    # The response cache: identical content of one task is answered once.
    cache_entries: int = Field(10_000, ge=0)
    cache_ttl_s: PositiveFloat = 3600.0


class Prices(_Section):
    """Dollars per million tokens."""

    input: float = Field(ge=0)
    cached_input: float = Field(ge=0)
    output: float = Field(ge=0)


DEFAULT_PRICES = {"gpt-5.4-nano": Prices(input=0.20, cached_input=0.02, output=1.25)}


class BudgetSettings(_Section):
    """A daily spending limit (UTC days) and what happens when it is reached."""

    usd_per_day: PositiveFloat | None = None
    # pause: stop consuming until the next UTC day; local-only: answer with the free
    # local tier only; stop: stop the processor (exit 1).
    policy: Literal["pause", "local-only", "stop"] = "pause"
    # Shares of usd_per_day at which an alert goes to the alerts topic, once a day each.
    alert_at: tuple[Annotated[float, Field(gt=0, le=1)], ...] = (0.5, 0.8, 1.0)
    # Extra or overriding prices per model id; flex-tier calls cost half (batch prices).
    prices: dict[str, Prices] = Field(default_factory=dict)

    def price_table(self) -> dict[str, Prices]:
        return {**DEFAULT_PRICES, **self.prices}


class MetricsSettings(_Section):
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(9464, ge=0, le=65535)


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "json"


_FILE_DATA: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "sluicegate_config_file", default=None
)


class _FileSource(PydanticBaseSettingsSource):
    """Values from the TOML file being loaded (below the environment in precedence)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_FILE_DATA.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_FILE_DATA.get() or {})


class Settings(BaseSettings):
    """Everything the processor reads at start-up. Frozen: nothing changes it later."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        frozen=True,
        extra="forbid",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    routes: tuple[RouteSettings, ...] = ()
    processing: ProcessingSettings = Field(default_factory=ProcessingSettings)
    dlq: DlqSettings = Field(default_factory=DlqSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    budget: BudgetSettings = Field(default_factory=BudgetSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _FileSource(settings_cls)

    @model_validator(mode="after")
    def _routes_consistent(self) -> Settings:
        names: set[str] = set()
        owner: dict[str, str] = {}
        for route in self.routes:
            if route.name in names:
                raise ValueError(f"routes: the name {route.name!r} is used twice")
            names.add(route.name)
            for topic in route.input_topics:
                if topic in owner:
                    raise ValueError(
                        f"routes: input topic {topic!r} belongs to routes {owner[topic]!r} "
                        f"and {route.name!r}; each input topic feeds one route"
                    )
                owner[topic] = route.name
            if route.output_topic in (self.dlq.topic, *owner):
                raise ValueError(
                    f"routes.{route.name}.output_topic {route.output_topic!r} is an input "
                    "or the DLQ topic; that would loop events back into the processor"
                )
        return self

    def as_dict(self) -> dict[str, Any]:
        """The effective settings as plain data, secrets masked: safe to print or log.

        ``SecretStr`` fields dump as a mask already; the free-form librdkafka maps and
        URLs are masked by key and position (``stream.secrets``). The price table shown
        is the one in effect (the defaults plus ``budget.prices``)."""
        data = self.model_dump(mode="json")
        data["budget"]["prices"] = {
            model: prices.model_dump(mode="json")
            for model, prices in self.budget.price_table().items()
        }
        return secrets.mask_mapping(data)

    def secret_values(self) -> list[str]:
        """Every secret this configuration holds, revealed (to register for masking)."""
        kafka, model = self.kafka, self.model
        held = (kafka.sasl_password, kafka.ssl_key_password, model.api_key)
        found = [secret.get_secret_value() for secret in held if secret is not None]
        for extra in (kafka.consumer_extra, kafka.producer_extra):
            found += [str(v) for k, v in extra.items() if secrets.is_secret_key(k)]
        userinfo = _userinfo(model.base_url)
        if userinfo:
            found.append(userinfo)
            found += [part for part in userinfo.split(":")[1:] if part]
        return found


def _userinfo(url: str | None) -> str | None:
    """The ``user:password`` of a URL, if it has one."""
    if not url or "://" not in url:
        return None
    netloc = url.split("://", 1)[1].split("/", 1)[0]
    return netloc.rsplit("@", 1)[0] if "@" in netloc else None


def env_name(*path: str) -> str:
    """The environment variable that sets the key at ``path``, e.g. kafka.group_id."""
    return ENV_PREFIX + ENV_DELIMITER.join(p.upper() for p in path)


@contextmanager
def _file_values(data: Mapping[str, Any]) -> Iterator[None]:
    token = _FILE_DATA.set(data)
    try:
        yield
    finally:
        _FILE_DATA.reset(token)


def read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def load(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from ``path`` (or ``$SLUICEGATE_CONFIG``), the environment and
    ``overrides``; raise ``ConfigError`` listing every bad key."""
    if path is None and os.environ.get(CONFIG_ENV):
        path = os.environ[CONFIG_ENV]
    data = read_file(Path(path)) if path is not None else {}
    unknown = unknown_env_vars(os.environ)
    if unknown:
        raise ConfigError(
            f"environment variable {unknown[0]} names no setting (all unknown: "
            f"{', '.join(unknown)}); {env_accepted(unknown[0])}; nested keys are written "
            "like SLUICEGATE_KAFKA__GROUP_ID"
        )
    try:
        with _file_values(data):
            settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, data)) from None
    secrets.register(*settings.secret_values())
    return settings


def env_accepted(env_var: str) -> str:
    """What is accepted where ``env_var`` stops naming a setting, as variable names."""
    parts = env_var[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
    model: type[BaseModel] = Settings
    known: list[str] = []
    for part in parts:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        known.append(part)
        model = annotation
    names = [env_name(*known, name) for name in sorted(model.model_fields)]
    return "accepted " + ("here" if known else "sections") + ": " + ", ".join(names)


def _describe(
    exc: ValidationError, path: Path | str | None, data: Mapping[str, Any] | None = None
) -> str:
    where = f" in {path} or the environment" if path else " in the environment"
    lines = [f"invalid configuration{where}:"]
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = _route_named(".".join(loc), loc, data or {}) or "(top level)"
        if error["type"] == "extra_forbidden":
            message = f"unknown key; accepted here: {_accepted_keys(loc[:-1])}"
        else:
            message = error["msg"].removeprefix("Value error, ")
        # The value of a key we do not know is never shown: a misspelt sasl_pasword is
        # as secret as the real one.
        quiet = error["type"] in ("missing", "extra_forbidden")
        shown = "" if quiet else f" (got {_show(loc, error['input'])})"
        env = f" [env {env_name(*loc)}]" if loc and not any(p.isdigit() for p in loc) else ""
        lines.append(f"  {key}: {message}{shown}{env}")
    return "\n".join(lines)


def _route_named(key: str, loc: list[str], data: Mapping[str, Any]) -> str:
    """``routes.1.x`` as ``routes.1 (route 'reviews').x`` when the file names it."""
    if len(loc) < 2 or loc[0] != "routes" or not loc[1].isdigit():
        return key
    routes = data.get("routes")
    index = int(loc[1])
    if not isinstance(routes, list) or index >= len(routes) or not isinstance(routes[index], dict):
        return key
    name = routes[index].get("name")
    if not isinstance(name, str):
        return key
    return ".".join([f"routes.{index} (route {name!r})", *loc[2:]])


def _show(loc: list[str], value: Any) -> str:
    if any(secrets.is_secret_key(part) for part in loc):
        return repr(secrets.MASK)
    text = repr(secrets.mask_value(loc[-1] if loc else "", value))
    return text if len(text) <= 80 else text[:77] + "..."


def _accepted_keys(loc: list[str]) -> str:
    model: type[BaseModel] = Settings
    for part in loc:
        if part.isdigit():
            continue
        annotation = model.model_fields[part].annotation if part in model.model_fields else None
        inner = getattr(annotation, "__args__", (annotation,))
        nested = [t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:
            break
        model = nested[0]
    return ", ".join(sorted(model.model_fields))


def settings_path(env_var: str) -> tuple[str, ...] | None:
    """The settings key an environment variable sets (``SLUICEGATE_KAFKA__GROUP_ID`` ->
    ``("kafka", "group_id")``), or None if it names no setting. Keys below a mapping
    (``kafka.consumer_extra``) are free-form."""
    if not env_var.startswith(ENV_PREFIX):
        return None
    parts = env_var[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER)
    model: type[BaseModel] = Settings
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        if depth == len(parts) - 1:
            return tuple(parts)
        origin = getattr(annotation, "__origin__", None)
        if origin is dict:
            return tuple(parts)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return None


def unknown_env_vars(environ: Mapping[str, str]) -> list[str]:
    """``SLUICEGATE_`` variables that look like settings (nested or a section name) but set
    none: a typo there would otherwise be ignored without a word."""
    sections = {name.upper() for name in Settings.model_fields}
    suspicious = []
    for name in environ:
        if not name.startswith(ENV_PREFIX) or name in TOOL_ENV_VARS:
            continue
        rest = name[len(ENV_PREFIX) :]
        # SLUICEGATE_LOG_LEVEL (one underscore for two) or SLUICEGATE_CONFG would
        # otherwise be ignored as well.
        near_miss = rest.startswith(tuple(f"{s}_" for s in sections)) or bool(
            difflib.get_close_matches(name, [CONFIG_ENV], n=1, cutoff=0.8)
        )
        looks_like = ENV_DELIMITER in rest or rest in sections or near_miss
        if looks_like and settings_path(name) is None:
            suspicious.append(name)
    return sorted(suspicious)
