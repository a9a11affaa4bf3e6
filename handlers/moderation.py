"""``moderation``: safe | review | violates, a score per harm category of OpenAI's
taxonomy, and scores for the route's own policy categories (spam, self-promotion...).

Local tier: alt-profanity-check answers "safe" for texts it finds clean and that name no
harm (a few words of self-harm, violence and the like send a text to the model however
clean its language). Its confidence is the precision of "safe" measured on OpenAI's
moderation evaluation set (EVAL.md) at the text's profanity probability.

With ``moderations_endpoint``, the free ``/v1/moderations`` scores the taxonomy first:
clear cases are decided on those scores alone, and nano is asked only about borderline
ones or when the route has policy categories of its own.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from handlers import local, prompts
from handlers.enrich import Answer, EnrichingHandler, EnrichOptions
from handlers.model import ModelPort, Reply, Task
from schemas.enriched import Alert, EnrichedEvent, Severity
from schemas.events import Post, _Event
from schemas.outputs import (
    MODERATION_CATEGORIES,
    field_name,
    moderation_answer_model,
)
from schemas.records import SourceRecord

# (profanity probability, precision of "safe") on the 1,680 labelled samples.
SAFE_PRECISION = ((0.0, 0.95), (0.02, 0.94), (0.05, 0.91), (0.1, 0.87), (0.2, 0.85), (1.0, 0.3))
_HARM_WORDS = re.compile(
    r"\b(suicid\w*|kill\w*|die|dying|dead|death|murder\w*|shoot\w*|stab\w*|bomb\w*|gun\w*|"
    r"weapon\w*|rape\w*|sex\w*|nude\w*|naked|porn\w*|drug\w*|cocaine|heroin|meth|cut(ting)? "
    r"myself|hurt\w*|blood\w*|hate\w*|attack\w*|terror\w*|abuse\w*|torture\w*|child\w*|minor\w*|"
    r"kid\w*|girl\w*|boy\w*|slave\w*|nazi\w*|jew\w*|muslim\w*|black|gay|trans\w*)\b",
    re.I,
)


class ModerationOptions(EnrichOptions):
    policy: tuple[str, ...] = Field(
        (), description="the route's own categories, scored too (e.g. spam, self-promotion)"
    )
    moderations_endpoint: bool = Field(
        False, description="score the taxonomy with the free /v1/moderations first"
    )
    review_above: float = Field(0.3, ge=0, le=1, description="a score this high needs review")
    violates_above: float = Field(0.8, ge=0, le=1, description="a score this high violates")
    alert_min_score: float = Field(
        0.0, ge=0, le=1, description="alert only when the worst score is at least this high"
    )


class ModerationHandler(EnrichingHandler):
    name = "moderation"
    Options = ModerationOptions
    options: ModerationOptions
    kind = Post
    default_threshold: ClassVar[float | None] = 0.93  # with static_tier only
    default_may_omit: ClassVar[tuple[str, ...]] = ("reason",)
    default_alerts: ClassVar[tuple[str, ...]] = ("violates",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        scorer = local.profanity() if self.static_enabled else None
        self._profanity = local.ScoreBatcher[float](scorer) if scorer is not None else None

    def make_task(self) -> Task:
        policy = tuple(self.options.policy)
        text = prompts.MODERATION
        if policy:
            listed = ", ".join(policy)
            text += f'\nThe route\'s own policy categories, scored under "policy": {listed}.\n'
        if self.options.moderations_endpoint:
            # The endpoint scores the taxonomy; nano decides the action and the policy.
            text += (
                "\nEach event ends with the scores a moderation classifier gave it, after "
                "the line [classifier scores]. Use them; do not score those categories again.\n"
            )
            return Task("moderation", text, moderation_answer_model(policy, taxonomy=False))
        return Task("moderation", text, moderation_answer_model(policy))

    async def consult(
        self, model: ModelPort, event: _Event, text: str
    ) -> tuple[Answer, Reply, bool]:
        if not self.options.moderations_endpoint:
            return await super().consult(model, event, text)
        verdict = await model.moderate(text, route=self.context.route)
        scores = {c: round(verdict.scores.get(c, 0.0), 6) for c in MODERATION_CATEGORIES}
        worst_category = max(scores, key=scores.__getitem__)
        worst = scores[worst_category]
        opts = self.options
        borderline = opts.review_above <= worst < opts.violates_above
        if not opts.policy and not borderline:
            # Clear either way: the free endpoint decides, nano is not asked.
            action = "violates" if worst >= opts.violates_above else "safe"
            fields: dict[str, Any] = {
                "action": action,
                "categories": scores,
                "reason": f"{verdict.model}: {worst_category} scored {worst:.3f}",
            }
            output = self.task.output.model_validate({"action": action, "reason": fields["reason"]})
            return (
                Answer(fields, _confidence(action, worst, opts)),
                Reply(output, "model", verdict.model),
                False,
            )
        listed = "\n".join(f"{c}: {v:.3f}" for c, v in scores.items() if v >= 0.01)
        data = f"{text}\n[classifier scores]\n{listed or 'all below 0.01'}"
        reply = await model.ask(self.task, data, route=self.context.route, batch=opts.batch)
        raw = reply.output.model_dump(mode="json")
        fields = {"action": raw["action"], "categories": scores, "reason": raw["reason"]}
        if opts.policy:
            fields["policy"] = {p: raw["policy"][field_name(p)] for p in opts.policy}
            worst = max(worst, *fields["policy"].values())
        return Answer(fields, _confidence(raw["action"], worst, opts)), reply, False

    async def local_later(self, event: Post) -> Answer | None:  # type: ignore[override]
        if self._profanity is None:
            return None
        text = local.bounded(event.text())
        if _HARM_WORDS.search(text):
            return None
        p = float(await self._profanity.score(text))
        confidence = local.calibrated(SAFE_PRECISION, p)
        categories = dict.fromkeys(MODERATION_CATEGORIES, 0.0)
        categories["harassment"] = round(p, 4)
        fields: dict[str, Any] = {
            "action": "safe",
            "categories": categories,
            "reason": f"clean language (profanity {p:.3f}) and no harm words",
        }
        if self.options.policy:
            fields["policy"] = None  # unknown: the local tier does not judge policies
        return Answer(fields, confidence)

    def from_model(self, event: Post, output: BaseModel) -> Answer:  # type: ignore[override]
        raw = output.model_dump(mode="json")
        categories = {c: raw["categories"][field_name(c)] for c in MODERATION_CATEGORIES}
        fields: dict[str, Any] = {
            "action": raw["action"],
            "categories": categories,
            "reason": raw["reason"],
        }
        worst = max(categories.values())
        if self.options.policy:
            fields["policy"] = {p: raw["policy"][field_name(p)] for p in self.options.policy}
            worst = max(worst, *fields["policy"].values())
        return Answer(fields, _confidence(raw["action"], worst, self.options))

    def alerts_for(
        self, record: SourceRecord, answer: Answer, enriched: EnrichedEvent
    ) -> list[Alert]:
        action = answer.fields["action"]
        scores = {**answer.fields["categories"], **(answer.fields.get("policy") or {})}
        worst = max(scores, key=scores.__getitem__)
        if action not in self.alert_labels or scores[worst] < self.options.alert_min_score:
            return []
        event = enriched.event
        ident = event.get("post_id") or event.get("id") if isinstance(event, dict) else None
        severity: Severity = (
            "critical" if scores[worst] >= self.options.violates_above else "warning"
        )
        return [
            self.alert(
                f"moderation.{action}",
                severity,
                f"moderation:{self.context.route}:{ident or record.where}",
                f"moderation: {action} ({worst} {scores[worst]:.2f})",
                record=record,
                enriched=enriched,
                category=worst,
                score=scores[worst],
            )
        ]


def _confidence(action: str, worst: float, options: ModerationOptions) -> float:
    """How far the worst score sits from the thresholds of the action it supports."""
    if action == "safe":
        return max(0.0, 1 - worst / max(options.review_above, 1e-9) * 0.5)
    if action == "violates":
        return min(1.0, 0.5 + worst / 2)
    return 0.5
