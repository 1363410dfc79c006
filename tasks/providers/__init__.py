"""LLM providers behind one protocol, chosen by the ``provider/`` prefix of a model id."""

from tasks.providers.base import Completion, CompletionRequest, Provider, split_model_id
from tasks.providers.registry import ProviderRegistry, known_prefixes

__all__ = [
    "Completion",
    "CompletionRequest",
    "Provider",
    "ProviderRegistry",
    "known_prefixes",
    "split_model_id",
]
