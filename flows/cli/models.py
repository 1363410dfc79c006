"""``plumbline models``: the provider prefixes Plumbline knows and the offline fake models."""

from __future__ import annotations

from flows.cli.tables import print_table


def models() -> int:
    """List provider prefixes and offline models.

    List the provider prefixes Plumbline knows, with the model ids each takes, and the offline
    fake models (no key, no network).
    """
    from tasks.providers.fake import FAKE_MODELS
    from tasks.providers.registry import known_prefixes

    offline = ", ".join(f"fake/{m}" for m in FAKE_MODELS) + " (offline, no key)"
    special = {"fake": offline,
               "http": "http/<name> (a target of PLUMBLINE_TARGETS_FILE, targets.toml)",
               "python": "python/<module>:<function> (your own function)"}
    rows = [
        {"prefix": prefix, "model_ids": special.get(prefix, f"{prefix}/<model>")}
        for prefix in known_prefixes()
    ]
    print_table(rows, ["prefix", "model_ids"])
    return 0
