"""The simulator's knobs: limits, latency, fault rates. Frozen; run-time changes
(``POST /sim/config``) replace the whole object after validating it again."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stream.errors import ConfigError

# The fault kinds, in the order a drawn number walks their rates.
FAULT_RATES = (
    "error_500",
    "error_503",
    "hang",
    "invalid_json",
    "truncated",
    "wrong_enum",
    "refusal",
)
# Settings fixed at start-up: a running server cannot move or reseed itself.
STARTUP_ONLY = frozenset(
    {"host", "port", "seed", "cache_blocks", "teacher", "teacher_noise", "log_teacher"}
)


class SimulatorSettings(BaseModel):
    """How the simulated OpenAI endpoint behaves. Limits of 0 mean unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", description="interface to bind")
    port: int = Field(8088, ge=0, le=65535, description="port to bind; 0 picks a free one")
    rpm: int = Field(5000, ge=0, description="requests per minute; 0 = unlimited")
    tpm: int = Field(2_000_000, ge=0, description="tokens per minute; 0 = unlimited")
    default_max_completion_tokens: int = Field(
        256, ge=1, description="tokens a request reserves when it sets no max_completion_tokens"
    )
    latency_median_ms: float = Field(300.0, ge=0, description="median answer time (lognormal)")
    latency_sigma: float = Field(0.5, ge=0, description="lognormal sigma of the answer time")
    latency_per_output_token_ms: float = Field(
        0.0, ge=0, description="extra time per completion token"
    )
    flex_latency_factor: float = Field(3.0, ge=1, description="latency multiplier of flex")
    flex_available: bool = Field(True, description="whether service_tier=flex has capacity")
    error_500: float = Field(0.0, ge=0, le=1, description="share of requests answered 500")
    error_503: float = Field(0.0, ge=0, le=1, description="share of requests answered 503")
    hang: float = Field(0.0, ge=0, le=1, description="share of requests that hang for hang_s")
    hang_s: float = Field(120.0, gt=0, description="how long a hanging request sleeps")
    invalid_json: float = Field(0.0, ge=0, le=1, description="share answered with broken JSON")
    truncated: float = Field(0.0, ge=0, le=1, description="share cut short (finish_reason=length)")
    wrong_enum: float = Field(
        0.0, ge=0, le=1, description="share with one enum field outside its enum"
    )
    refusal: float = Field(0.0, ge=0, le=1, description="share the model refuses")
    seed: int | None = Field(None, description="seed for latency and fault draws")
    emulate: Literal["openai", "llama-cpp-python"] = Field(
        "openai",
        description="the server to behave like: openai (the default), or llama-cpp-python's "
        "OpenAI-compatible server (no json_schema: HTTP 500; json_object with a schema; a "
        "context window of context_tokens; max_tokens honoured, max_completion_tokens "
        "ignored, so an answer without max_tokens runs to the end of the context)",
    )
    context_tokens: int = Field(
        4096, ge=16, description="the context window of the llama-cpp-python emulation"
    )
    cache_blocks: int = Field(
        200_000, ge=1, description="prefix-cache capacity, in 128-token blocks (LRU)"
    )
    teacher: str | None = Field(
        None,
        description="a labelled CSV/JSONL: texts found in it are answered with its label "
        "(see stream/simulator/teacher.py)",
    )
    teacher_noise: float = Field(
        0.1, ge=0, le=1, description="share of the teacher's texts whose label is flipped"
    )
    log_teacher: str | None = Field(
        None,
        description="Loghub structured CSV (or a folder of them): log templates are "
        "answered from its EventTemplate column (stream/simulator/log_teacher.py)",
    )

    @model_validator(mode="after")
    def _rates_fit(self) -> SimulatorSettings:
        total = sum(getattr(self, name) for name in FAULT_RATES)
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"the fault rates ({', '.join(FAULT_RATES)}) add up to {total:g}; "
                "at most 1 is possible"
            )
        return self

    def fault_rates(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in FAULT_RATES}

    def updated(self, changes: dict[str, Any]) -> SimulatorSettings:
        """A copy with ``changes`` applied and validated; ``ConfigError`` names bad keys."""
        fixed = sorted(STARTUP_ONLY & changes.keys())
        if fixed:
            raise ConfigError(f"{', '.join(fixed)} can only be set at start-up")
        try:
            return SimulatorSettings.model_validate({**self.model_dump(), **changes})
        except ValidationError as exc:
            raise ConfigError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """One line per bad key, naming it and what is accepted."""
    parts = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(settings)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown key; accepted: {', '.join(SimulatorSettings.model_fields)}"
        parts.append(f"{key}: {message}")
    return "; ".join(parts)
