"""``plumbline demo``: weeks of scheduled runs simulated offline, the nightly flow, then the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from typing import Annotated

from cyclopts import Parameter

from flows.cli.common import Host, Port, Verbose, quiet_prefect
from flows.cli.serve import serve_api
from flows.cli.tables import print_verdicts

DEMO_MODELS = ["fake/stable", "fake/drifting"]


def demo(
    *,
    days: Annotated[
        int, Parameter(help="Days of history to simulate (35: a 7-day window + 28 baseline).")
    ] = 35,
    suite: Annotated[str, Parameter(help="Suite to run.")] = "smoke",
    models: Annotated[
        list[str], Parameter(help="Models to simulate.", consume_multiple=True, negative="")
    ] = DEMO_MODELS,
    no_serve: Annotated[
        bool,
        Parameter(negative="", help="Stop after writing the summaries and print where they are."),
    ] = False,
    host: Host = "127.0.0.1",
    port: Port = 8000,
    verbose: Verbose = False,
) -> int:
    """Simulate weeks of scheduled runs offline, aggregate, serve.

    Run a simulated history of scheduled runs of a suite against the offline fake models
    (timestamps backdated day by day), run the nightly flow, then serve the dashboard and API
    until interrupted.
    """
    quiet_prefect(verbose)
    # Prefect reads its logging settings once, when first imported: after quiet_prefect.
    from flows.nightly import nightly
    from flows.run_suite import run_suite
    from tasks.settings import Settings
    from tasks.storage import open_store
    from tasks.storage.layout import DEMO_STATE_KEY, latest_key

    settings = Settings()
    store = open_store(settings)
    print(f"Plumbline demo: {days} days of scheduled '{suite}' runs against "
          f"{', '.join(models)}; data in {store.describe()}")
    print("Starting Prefect's embedded engine (10-25 s the first time)...", flush=True)
    done_key = DEMO_STATE_KEY
    try:
        done = set(json.loads(store.get(done_key)))
    except KeyError:
        done = set()
    now = datetime.now(UTC)
    for i in range(days):
        day = (now - timedelta(days=days - 1 - i)).date()
        as_of = min(datetime.combine(day, time(6, 0), tzinfo=UTC), now)
        label = f"[{i + 1:>2}/{days}] {day}"
        if day.isoformat() in done:
            print(f"{label} already simulated, skipping", flush=True)
            continue
        result = run_suite(
            suite=suite, models=models, source="scheduled", as_of=as_of,
            run_id=f"demo-{suite}-{day.isoformat()}",
        )
        rates = ", ".join(f"{r['model_id']} {r['pass_rate']:.2f}" for r in result["summary"])
        print(f"{label} {result['rows']} rows; pass rate {rates}", flush=True)
        done.add(day.isoformat())
        store.put(done_key, json.dumps(sorted(done)).encode())
    print("Running the nightly flow (compact, aggregate, publish)...", flush=True)
    out = nightly()
    print(f"nightly: {out['days']} day(s), {out['summary_rows']} summary rows")
    print_verdicts(store)
    print("Summaries:")
    for name in ("chart.json", "models.json", "drift.json", "nightly.json"):
        path = store.local_path(latest_key(name))
        print(f"  {path if path is not None else latest_key(name)}")
    if no_serve:
        return 0
    print(f"Serving the dashboard and API on http://{host}:{port}/ "
          f"(also /api/models, /api/drift, /api/data/chart, /docs); Ctrl-C to stop.", flush=True)
    return serve_api(host, port, settings)
