"""Property-based: requests generated from the app's own OpenAPI schema (valid and invalid) never
get a 5xx. Bounded to a few dozen examples per operation so it runs in seconds.

The same check as a command against a running server:
``schemathesis run http://127.0.0.1:PORT/openapi.json --checks not_a_server_error -n 100``.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from api import create_app
from tasks.settings import Settings
from tasks.storage.local import LocalStore
from tasks.summaries.publish import put_json
from tests.api.conftest import SECRET, make_token

# Schemathesis collects operations at import time, so the app (and its temp folder) exists then.
_ROOT = Path(tempfile.mkdtemp(prefix="plumbline-schemathesis-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
_STORE = LocalStore(_ROOT / "data")
put_json(_STORE, "models.json", {"models": []})  # one summary present, the others missing
_APP = create_app(
    Settings(data_dir=_ROOT / "data", spool_dir=_ROOT / "spool", nextauth_secret=SECRET,
             rate_limit_per_minute=0),
    _STORE,
)
_TOKEN = f"Bearer {make_token()}"
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@schema.parametrize()
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_no_server_errors(case: schemathesis.Case) -> None:
    # Always signed in, so the user endpoints are explored past 401 (the auth failures have their
    # own tests in test_auth.py).
    case.headers = {**(case.headers or {}), "Authorization": _TOKEN}
    case.call_and_validate(checks=[not_a_server_error])
