"""The FastAPI app: reads materialized summaries, never raw data."""

from api.app import create_app

__all__ = ["create_app"]
