"""The FastAPI app: reads materialized summaries, never raw data."""

from api.app import create_app

# Read by `plumbline` to tell this package from another distribution's `api` (flows/cli/app.py).
__plumbline__ = True

__all__ = ["create_app"]
