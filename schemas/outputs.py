"""What the model answers for each built-in handler: pydantic models, labels as enums.

Each model becomes a strict JSON schema in the request (``stream.model.client``), so the
provider can only answer with these labels; the answer is validated again on arrival.
Field descriptions are part of the schema the model reads: they are short instructions.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- sentiment and intent ----------------------------------------------------------------


class Sentiment(StrEnum):
    positive = "positive"
    neutral = "neutral"
    negative = "negative"
    frustrated = "frustrated"


class Intent(StrEnum):
    purchase = "purchase"
    compare = "compare"
    support = "support"
    return_ = "return"
    other = "other"


class SentimentAnswer(_Answer):
    sentiment: Sentiment = Field(description="the writer's overall feeling")
    intent: Intent = Field(description="what the writer wants to do next")
    confidence: float = Field(ge=0, le=1, description="how sure the label is, 0 to 1")
    phrases: list[str] = Field(description="up to 5 short phrases quoted from the text")


# -- moderation --------------------------------------------------------------------------


class Action(StrEnum):
    safe = "safe"
    review = "review"
    violates = "violates"


# OpenAI's moderation taxonomy; field names replace "/" and "-" with "_".
MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


def field_name(category: str) -> str:
    """``self-harm/intent`` -> ``self_harm_intent``: a category as a schema property."""
    return category.replace("/", "_").replace("-", "_").replace(" ", "_")


def category_scores_model(categories: tuple[str, ...], name: str) -> type[BaseModel]:
    """An object with one score in [0, 1] per category."""
    fields: dict[str, object] = {
        field_name(c): (float, Field(ge=0, le=1, description=f"likelihood of {c}, 0 to 1"))
        for c in categories
    }
    return create_model(name, __base__=_Answer, **fields)  # type: ignore[call-overload, no-any-return]


TaxonomyScores = category_scores_model(MODERATION_CATEGORIES, "TaxonomyScores")


def moderation_answer_model(
    policy: tuple[str, ...] = (), *, taxonomy: bool = True
) -> type[BaseModel]:
    """The moderation answer: an action, the taxonomy scores (unless the moderation
    endpoint gave them) and the route's own policy categories (``spam``...) as scores."""
    fields: dict[str, object] = {
        "action": (Action, Field(description="safe, review (a person should look), violates")),
        "reason": (str, Field(description="one short sentence on the decision")),
    }
    if taxonomy:
        fields["categories"] = (TaxonomyScores, Field(description="a score per harm category"))
    if policy:
        scores = category_scores_model(policy, "PolicyScores")
        fields["policy"] = (scores, Field(description="a score per policy category"))
    return create_model("ModerationAnswer", __base__=_Answer, **fields)  # type: ignore[call-overload, no-any-return]


ModerationAnswer = moderation_answer_model()


# -- log parsing -------------------------------------------------------------------------


class Level(StrEnum):
    trace = "trace"
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"
    critical = "critical"
    unknown = "unknown"


class Parameter(_Answer):
    name: str = Field(description="what the value is, in snake_case (e.g. block_id, ip)")
    value: str = Field(description="the value exactly as it appears in the line")


class LogModelAnswer(_Answer):
    """What the model is asked to write for a new kind of log line (the request's schema);
    the ``logs`` handler turns it into a ``LogAnswer``."""

    template: str = Field(description="the line's message with every variable part replaced by <*>")
    level: Level
    component: str = Field(description="the service or component that wrote the line")
    timestamp: str = Field(description="the line's time in ISO 8601, or empty if none")
    parameters: list[Parameter] = Field(description="the variables, in order of appearance")


class LogAnswer(_Answer):
    """The ``logs`` handler's answer, as published in ``enrichment.answer``: the line's
    template (learned from the model once per template), its values and header fields."""

    template: str = Field(description="the message with each variable written <*>")
    template_id: str = Field(
        pattern=r"^T[0-9a-f]{8}$",
        description="a hash of the template: the same on every replica and restart",
    )
    template_source: Literal["model", "store", "local"] = Field(
        description="model: just learned from the model (this line's call); store: a "
        "template learned earlier fitted the line; local: Drain3's template stood in "
        "because the model's answer was unusable"
    )
    parameters: dict[str, str] = Field(
        description="the value of each <*>, in order, under a name (from the model, else "
        "the key or word before it; repeated names get _2, _3...)"
    )
    level: Level
    component: str | None = Field(description="the header's or the model's component")
    timestamp: str | None = Field(
        description="the header's time: ISO 8601 when its shape is known, else as written"
    )
    error_signature: str | None = Field(
        pattern=r"^E[0-9a-f]{8}$",
        description="for warning, error and critical lines: a hash of the template, for "
        "grouping incidents",
    )
