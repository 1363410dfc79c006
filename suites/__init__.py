"""Prompt suites shipped with Plumbline, as data (``<name>/suite.toml`` + ``cases.jsonl``)."""
