"""Providers register by prefix; the registry builds each once and shares it across calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.errors import ProviderConfigError
from tasks.providers.base import Provider, split_model_id

ProviderFactory = Callable[..., Provider]


def _fake_factory(**options: Any) -> Provider:
    from tasks.providers.fake import FakeProvider

    return FakeProvider(**options)


# Prefix → factory. Real-API providers add themselves here in their own modules; factories import
# their SDK lazily so a missing optional package costs nothing until that provider is used.
_FACTORIES: dict[str, ProviderFactory] = {"fake": _fake_factory}


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
