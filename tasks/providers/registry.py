"""Providers register by prefix; the registry builds each once and shares it across calls."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from tasks.errors import ProviderConfigError
from tasks.providers.base import Provider, split_model_id

ProviderFactory = Callable[..., Provider]


def _fake_factory(**options: Any) -> Provider:
    from tasks.providers.fake import FakeProvider

    return FakeProvider(**options)


def _lazy(module: str, attr: str, *args: Any) -> ProviderFactory:
    """A factory that imports its provider module (and so its SDK) only when first used."""

    def factory(**options: Any) -> Provider:
        target = getattr(importlib.import_module(module), attr)
        return target(*args)(**options) if args else target(**options)

    return factory


# Prefix → factory. Factories import their SDK lazily, so a missing optional package costs
# nothing until that provider is used.
_FACTORIES: dict[str, ProviderFactory] = {
    "fake": _fake_factory,
    "openai": _lazy("tasks.providers.openai_provider", "openai_factory"),
    "anthropic": _lazy("tasks.providers.anthropic_provider", "anthropic_factory"),
    # Your own services and pipelines: http/<name> (a table of the targets file) and
    # python/<module>:<function>.
    "http": _lazy("tasks.providers.http_target", "HTTPTargetProvider"),
    "python": _lazy("tasks.providers.python_target", "PythonTargetProvider"),
    **{
        prefix: _lazy("tasks.providers.openai_compat", "compat_factory", prefix)
        for prefix in ("openrouter", "groq", "gemini", "vllm", "ollama", "openai-compatible")
    },
}


def register_provider(prefix: str, factory: ProviderFactory) -> None:
    _FACTORIES[prefix] = factory


def known_prefixes() -> list[str]:
    return sorted(_FACTORIES)


class ProviderRegistry:
    """One provider instance per prefix for the life of a run (one shared HTTP client each).

    Pass ``instances`` to inject ready-made providers (tests hand in clients with a mock
    transport); ``options`` are keyword arguments for a prefix's factory.
    """

    def __init__(
        self,
        instances: dict[str, Provider] | None = None,
        options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self._instances: dict[str, Provider] = dict(instances or {})
        self._options = options or {}

    def for_model(self, model_id: str) -> tuple[Provider, str]:
        prefix, model = split_model_id(model_id)
        if prefix not in self._instances:
            factory = _FACTORIES.get(prefix)
            if factory is None:
                raise ProviderConfigError(
                    f"unknown provider {prefix!r} in model id {model_id!r} "
                    f"(known: {', '.join(known_prefixes())})"
                )
            self._instances[prefix] = factory(**self._options.get(prefix, {}))
        return self._instances[prefix], model

    def check(self, model_ids: list[str]) -> None:
        """Fail before any call if a model's provider is unknown or misconfigured."""
        for model_id in model_ids:
            provider, model = self.for_model(model_id)
            check = getattr(provider, "check_model", None)
            if check is not None:
                check(model)

    async def aclose(self) -> None:
        for provider in self._instances.values():
            await provider.aclose()
