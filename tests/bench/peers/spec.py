"""The spec file both peers read: the task as one plain request per event sends it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Spec:
    bootstrap: str
    group: str
    input_topic: str
    output_topic: str
    base_url: str
    api_key: str
    model: str
    instructions: str
    schema_name: str
    schema: dict[str, Any]

    @classmethod
    def read(cls, path: str) -> Spec:
        return cls(**json.loads(Path(path).read_text()))

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__))

    def response_format(self) -> Any:
        """Strict structured output, as ``chat.completions.parse`` would send it."""
        return {
            "type": "json_schema",
            "json_schema": {"name": self.schema_name, "schema": self.schema, "strict": True},
        }

    def messages(self, text: str) -> Any:
        return [
            {"role": "system", "content": self.instructions},
            {"role": "user", "content": text},
        ]
