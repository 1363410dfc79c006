"""Prefect flows (thin: they compose tasks and decide order) and the ``plumbline`` CLI."""
