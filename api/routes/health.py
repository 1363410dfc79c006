"""``GET /api/health``: storage reachable, time of the last nightly run, version."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import StoreDep
from tasks import __version__
from tasks.publish import NIGHTLY_STATUS
from tasks.storage.layout import latest_key

router = APIRouter(tags=["health"])


@router.get("/api/health")
def health(store: StoreDep) -> JSONResponse:
    body: dict[str, Any] = {"status": "ok", "version": __version__, "storage": "ok",
                            "last_nightly": None}
    try:
        body["last_nightly"] = json.loads(store.get(latest_key(NIGHTLY_STATUS))).get("finished_at")
    except KeyError:
        pass  # no nightly run yet: healthy, just empty
    except Exception as exc:  # the store itself is unreachable
        body.update(status="degraded", storage=f"error: {type(exc).__name__}: {exc}")
        return JSONResponse(body, status_code=503)
    return JSONResponse(body)
