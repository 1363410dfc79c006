"""Cost of a completion from the pricing table (``pricing.toml``, data, not code).

An unknown price is ``None`` and so is the cost computed from it: a missing price must never
look like a free call.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tasks.errors import ConfigError

SHIPPED_PRICING = Path(__file__).with_name("pricing.toml")
_PER = 1_000_000


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int | None, output_tokens: int | None) -> float | None:
        if input_tokens is None or output_tokens is None:
            return None
        return (input_tokens * self.input + output_tokens * self.output) / _PER


class PriceTable:
    """Model id → price: exact names and aliases first, then the longest ``*`` pattern."""

    def __init__(self, exact: dict[str, Price], patterns: dict[str, Price],
                 checked: str | None = None) -> None:
        self._exact = exact
        # Longest prefix first, so "openrouter/openai/*" beats "openrouter/*".
        self._patterns = sorted(patterns.items(), key=lambda kv: -len(kv[0]))
        self.checked = checked

    @classmethod
    def load(cls, *paths: Path) -> PriceTable:
        """The shipped table with each extra file's entries layered on top, in order."""
        exact: dict[str, Price] = {}
        patterns: dict[str, Price] = {}
        checked = None
        for path in (SHIPPED_PRICING, *paths):
            data = _read(path)
            checked = data.get("meta", {}).get("checked", checked)
            for key, raw in data.get("models", {}).items():
                price, aliases = _entry(path, key, raw)
                for name in (key, *aliases):
                    if name.endswith("*"):
                        patterns[name[:-1]] = price
                    else:
                        exact[name] = price
        return cls(exact, patterns, checked)

    def price(self, model_id: str) -> Price | None:
        found = self._exact.get(model_id)
        if found is not None:
            return found
        for prefix, price in self._patterns:
            if model_id.startswith(prefix):
                return price
        return None

    def cost(self, model_id: str, input_tokens: int | None,
             output_tokens: int | None) -> float | None:
        price = self.price(model_id)
        return None if price is None else price.cost(input_tokens, output_tokens)


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"pricing file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"pricing file {path}: {exc}") from None


def _entry(path: Path, key: str, raw: Any) -> tuple[Price, list[str]]:
    where = f"{path}: [models.{key!r}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table with input and output")
    unknown = set(raw) - {"input", "output", "aliases", "note"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    values = []
    for field in ("input", "output"):
        value = raw.get(field)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"{where}.{field} must be a non-negative number (USD per 1M "
                              f"tokens), got {value!r}")
        values.append(float(value))
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ConfigError(f"{where}.aliases must be a list of model ids")
    return Price(values[0], values[1]), aliases


@lru_cache(maxsize=8)
def load_pricing(extra: Path | None = None) -> PriceTable:
    """The table for a process, read once per extra file."""
    return PriceTable.load(*([extra] if extra else []))
