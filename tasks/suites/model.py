"""A suite and its cases as data: the types scorers, the loader and the run engine share.

Scorers import only this module, so the loader can validate assertion options against the scorer
registry without an import loop.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Message = dict[str, str]


@dataclass(frozen=True)
class SuiteDefaults:
    samples: int = 1
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = 42
    system_prompt: str | None = None


@dataclass(frozen=True)
class Case:
    id: str
    input: str | list[Message]
    assertion: dict[str, Any]
    ideal: str | list[str] | None = None
    category: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def assertion_type(self) -> str:
        return str(self.assertion.get("type", ""))

    @property
    def ideals(self) -> list[str]:
        """The ideal answers as a list (empty when the case has none)."""
        if self.ideal is None:
            return []
        return [self.ideal] if isinstance(self.ideal, str) else list(self.ideal)

    def messages(self, system_prompt: str | None = None) -> list[Message]:
        """The case input as chat messages, with an optional system prompt first."""
        msgs: list[Message] = []
        if system_prompt and not (
            isinstance(self.input, list) and self.input and self.input[0].get("role") == "system"
        ):
            msgs.append({"role": "system", "content": system_prompt})
        if isinstance(self.input, str):
            msgs.append({"role": "user", "content": self.input})
        else:
            msgs.extend(dict(m) for m in self.input)
        return msgs

    def canonical(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "input": self.input,
            "ideal": self.ideal,
            "assertion": self.assertion,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class Suite:
    name: str
    version: str
    description: str
    tier: str | None
    defaults: SuiteDefaults
    cases: tuple[Case, ...]
    path: Path

    @property
    def hash(self) -> str:
        """``sha256:`` over the canonical JSON of the cases sorted by id."""
        return suite_hash(self.cases)


def suite_hash(cases: tuple[Case, ...] | list[Case]) -> str:
    canon = [c.canonical() for c in sorted(cases, key=lambda c: c.id)]
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
