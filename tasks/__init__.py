"""Plumbline's units of work: plain typed functions that flows wrap as Prefect tasks."""

__version__ = "0.1.0"
# Read by `plumbline` to tell this package from another distribution's `tasks` (flows/cli/app.py).
__plumbline__ = True
