"""Plumbline's units of work: plain typed functions that flows wrap as Prefect tasks."""

__version__ = "0.1.0"
