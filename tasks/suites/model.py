"""A suite and its cases as data: the types scorers, the loader and the run engine share.

Scorers import only this module, so the loader can validate assertion options against the scorer
registry without an import loop.

A message's ``content`` is a string, or (user messages only) a list of parts: ``{"type": "text",
"text": ...}`` and resolved image parts (``tasks/suites/images.py``), which carry the image as
base64 with its media type and sha256. Each provider turns those into its own wire format.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Message = dict[str, Any]


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

    @property
    def has_images(self) -> bool:
        return isinstance(self.input, list) and any(
            _is_image(p) for m in self.input if isinstance(m.get("content"), list)
            for p in m["content"])

    def input_text(self) -> str:
        """The input as plain text, each image as ``[image: <file> (<media type>)]``: what a
        judge or a person reads, never the image's bytes."""
        if isinstance(self.input, str):
            return self.input
        return "\n".join(f"{m['role']}: {_content_text(m['content'])}" for m in self.input)

    def canonical(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "category": self.category,
            "input": _canonical_input(self.input),
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


def _is_image(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "image"


def _content_text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return " ".join(f"[image: {p.get('source')} ({p.get('media_type')})]" if _is_image(p)
                    else str(p.get("text", "")) for p in content)


def _canonical_input(inp: str | list[Message]) -> str | list[Message]:
    """The input for the hash: an image is its media type and the sha256 of its bytes.

    So the hash changes with any pixel, and not with the file's name or where the bytes were
    written (file or data URL): it covers what the model is sent. Text-only input is returned
    as it is, so the hashes of existing suites stay what they were.
    """
    if isinstance(inp, str) or not any(isinstance(m.get("content"), list) for m in inp):
        return inp
    return [
        {**m, "content": [
            {"type": "image", "media_type": p["media_type"], "sha256": p["sha256"]}
            if _is_image(p) else p for p in m["content"]]}
        if isinstance(m.get("content"), list) else m
        for m in inp
    ]
