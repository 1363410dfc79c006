"""The ``plumbline`` command line. Each subcommand is a small function over the flows and tasks."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from tasks import __version__
from tasks.errors import PlumblineError

Handler = Callable[[argparse.Namespace], int]


def _quiet_prefect(verbose: bool) -> None:
    # No internet here or on many servers: Prefect's telemetry would only log errors.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        # The embedded server logs its own shutdown (pending event flushes being cancelled) as
        # errors; they are not the user's problem. --verbose shows them.
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    cells = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


# --- demo -------------------------------------------------------------------------------------

def cmd_demo(args: argparse.Namespace) -> int:
    _quiet_prefect(args.verbose)
    from flows.nightly import nightly
    from flows.run_suite import RunSuiteParams, run_suite
    from tasks.settings import Settings
    from tasks.storage import open_store
    from tasks.storage.layout import latest_key

    settings = Settings()
    store = open_store(settings)
    print(f"Plumbline demo: {args.days} days of scheduled '{args.suite}' runs against "
          f"{', '.join(args.models)}; data in {store.describe()}")
    print("Starting Prefect's embedded engine (10-25 s the first time)...", flush=True)
    done_key = "state/demo.json"
    try:
        done = set(json.loads(store.get(done_key)))
    except KeyError:
        done = set()
    now = datetime.now(UTC)
    for i in range(args.days):
        day = (now - timedelta(days=args.days - 1 - i)).date()
        as_of = min(datetime.combine(day, time(6, 0), tzinfo=UTC), now)
        label = f"[{i + 1:>2}/{args.days}] {day}"
        if day.isoformat() in done:
            print(f"{label} already simulated, skipping", flush=True)
            continue
        result = run_suite(RunSuiteParams(
            suite=args.suite, models=args.models, source="scheduled", as_of=as_of,
            run_id=f"demo-{args.suite}-{day.isoformat()}",
        ))
        rates = ", ".join(f"{r['model_id']} {r['pass_rate']:.2f}" for r in result["summary"])
        print(f"{label} {result['rows']} rows; pass rate {rates}", flush=True)
        done.add(day.isoformat())
        store.put(done_key, json.dumps(sorted(done)).encode())
    print("Running the nightly flow (compact, aggregate, publish)...", flush=True)
    out = nightly()
    print(f"nightly: {out['days']} day(s), {out['summary_rows']} summary rows")
    _print_verdicts(store)
    print("Summaries:")
    for name in ("chart.json", "models.json", "drift.json", "nightly.json"):
        path = store.local_path(latest_key(name))
        print(f"  {path if path is not None else latest_key(name)}")
    if args.no_serve:
        return 0
    print(f"Serving the dashboard and API on http://{args.host}:{args.port}/ "
          f"(also /api/models, /api/drift, /api/data/chart, /docs); Ctrl-C to stop.", flush=True)
    return _serve_api(args.host, args.port, settings)


def _first_reason(reasons: list[str], width: int = 72) -> str:
    if not reasons:
        return ""
    more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
    text = reasons[0]
    if len(text) + len(more) > width:
        text = text[: width - len(more) - 1].rstrip() + "…"
    return text + more


def _print_verdicts(store: Any) -> None:
    """The night's answer to "did my model change?", one line per model."""
    from tasks.storage.layout import latest_key
    from tasks.summaries.payloads import MODELS, ModelsPayload, parse_summary

    key = latest_key(MODELS)
    try:
        data = store.get(key)
    except KeyError:
        return
    # A file that does not match the model stops with its name and the bad field (a
    # PlumblineError, which main() prints), never with a KeyError from deep in this table.
    payload = parse_summary(ModelsPayload, data, str(store.local_path(key) or key))
    window = payload.window
    rows = [
        {"model": m.model_id, "verdict": m.verdict, "pass_now": m.pass_rate_recent,
         "pass_before": m.pass_rate_baseline, "why": _first_reason(m.reasons)}
        for m in payload.models
    ]
    print(f"Verdicts (last {window.recent_days} days vs the {window.baseline_days} before, "
          f"as of {window.as_of}):")
    _print_table(rows, ["model", "verdict", "pass_now", "pass_before", "why"])


# --- run / nightly ----------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    _quiet_prefect(args.verbose)
    from flows.cli.progress import TerminalProgress
    from flows.run_suite import RunSuiteParams, run_suite
    from tasks.run.summary import SUMMARY_COLUMNS

    params = RunSuiteParams(
        suite=args.suite, models=args.models, samples=args.samples,
        temperature=args.temperature, seed=args.seed, max_tokens=args.max_tokens,
        run_id=args.run_id,
    )
    with TerminalProgress():
        result = run_suite(params)
    resumed = f", {result['resumed_cells']} already done" if result.get("resumed_cells") else ""
    print(f"run {result['run_id']}: {result['rows']} rows ({result.get('written', 0)} new"
          f"{resumed})")

    _print_table(result["summary"], SUMMARY_COLUMNS)
    return 0


def cmd_nightly(args: argparse.Namespace) -> int:
    _quiet_prefect(args.verbose)
    from flows.nightly import nightly

    out = nightly()
    print(json.dumps(out, indent=2, default=str))
    return 0


# --- api --------------------------------------------------------------------------------------

def _serve_api(host: str, port: int, settings: Any = None) -> int:
    import uvicorn

    from api import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    return _serve_api(args.host, args.port)


# --- suites / models --------------------------------------------------------------------------

def cmd_suites_list(args: argparse.Namespace) -> int:
    from tasks.errors import SuiteError
    from tasks.suites.load import list_suites, load_suite

    rows = []
    invalid = 0
    for path in list_suites():
        try:
            s = load_suite(path)
        except PlumblineError as exc:
            invalid += 1
            count = len(exc.problems) if isinstance(exc, SuiteError) else 1
            rows.append({"name": path.name, "version": "INVALID", "cases": None, "tier": None,
                         "hash": f"{count} problem(s)", "description": f"plumbline suites "
                         f"validate {path}"})
            continue
        types = sorted({c.assertion_type for c in s.cases})
        description = s.description if len(s.description) <= 60 else s.description[:59] + "…"
        rows.append({"name": s.name, "version": s.version, "cases": len(s.cases),
                     "categories": len({c.category for c in s.cases}),
                     "scorers": len(types), "tier": s.tier, "hash": s.hash[:19],
                     "description": description})
    _print_table(rows, ["name", "version", "cases", "categories", "scorers", "tier", "hash",
                        "description"])
    if invalid:
        print(f"\n{invalid} suite(s) invalid: run `plumbline suites validate NAME` for the "
              "file, line and field of each problem", file=sys.stderr)
    return 1 if invalid else 0


def cmd_suites_validate(args: argparse.Namespace) -> int:
    from collections import Counter

    from tasks.errors import SuiteError
    from tasks.suites.load import load_suite

    failed = 0
    for target in args.paths:
        try:
            s = load_suite(target)
        except SuiteError as exc:
            failed += 1
            noun = "problem" if len(exc.problems) == 1 else "problems"
            print(f"{target}: INVALID, {len(exc.problems)} {noun}:", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
            continue
        except PlumblineError as exc:
            failed += 1
            print(f"{target}: INVALID\n  {exc}", file=sys.stderr)
            continue
        cats = Counter(c.category or "-" for c in s.cases)
        types = Counter(c.assertion_type for c in s.cases)
        print(f"{target}: ok: {s.name} {s.version}, {len(s.cases)} cases, {s.hash}")
        print("  categories: " + ", ".join(f"{k} {v}" for k, v in sorted(cats.items())))
        print("  assertions: " + ", ".join(f"{k} {v}" for k, v in sorted(types.items())))
    if len(args.paths) > 1:
        print(f"{len(args.paths) - failed} valid, {failed} invalid")
    return 1 if failed else 0


def cmd_models(args: argparse.Namespace) -> int:
    from tasks.providers.fake import FAKE_MODELS
    from tasks.providers.registry import known_prefixes

    print("Provider prefixes: " + ", ".join(known_prefixes()))
    print("Offline models: " + ", ".join(f"fake/{m}" for m in FAKE_MODELS))
    return 0


# --- serve / up / submit ---------------------------------------------------------------------

def _prefect_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value() or None


def cmd_serve(args: argparse.Namespace) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if _prefect_api_url() is None:
        # Without a server Prefect would serve against a throwaway in-process API whose
        # scheduler never runs: the schedules would silently never fire.
        raise PlumblineError(
            "plumbline serve needs a running Prefect server: start one with `prefect server "
            "start` and set PREFECT_API_URL=http://127.0.0.1:4200/api, or run `plumbline up`, "
            "which starts the server, the UI, the served flows and the API together"
        )
    from deployments.serve import serve

    serve(limit=args.limit)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from deployments.up import Stack, run_up

    return run_up(Stack(host=args.host, prefect_port=args.prefect_port, api_port=args.api_port,
                        verbose=args.verbose, startup_timeout=args.startup_timeout))


def cmd_submit(args: argparse.Namespace) -> int:
    from flows.cli.submit_client import SubmitReport, load_results, submit
    from tasks.settings import Settings
    from tasks.storage import open_store

    path = Path(args.results)
    store = None if path.is_file() else open_store(Settings())
    rows = load_results(args.results, store)
    print(f"Submitting {len(rows)} row(s) from {args.results} to {args.api_url} ...", flush=True)

    def progress(r: SubmitReport) -> None:
        if r.total % 100 == 0:
            print(f"  {r.total}: {r.accepted} accepted, {r.duplicate} duplicate, "
                  f"{r.failed} failed", flush=True)

    token = args.token or os.environ.get("PLUMBLINE_API_TOKEN") or None
    report = submit(rows, args.api_url, token=token, on_progress=progress)
    for err in report.errors[:20]:
        print(f"  failed: {err}", file=sys.stderr)
    if len(report.errors) > 20:
        print(f"  ... and {len(report.errors) - 20} more failures", file=sys.stderr)
    print(f"accepted {report.accepted}, duplicate {report.duplicate}, failed {report.failed}, "
          f"skipped {report.skipped} (failed calls: nothing to submit)")
    return 1 if report.failed else 0


# --- parser -----------------------------------------------------------------------------------

def _add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect's own logs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plumbline",
        description="Scheduled LLM evaluation that notices when the model behind a name changes.",
    )
    parser.add_argument("--version", action="version", version=f"plumbline {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="simulate weeks of scheduled runs offline, aggregate, serve",
                       description="Run a simulated history of scheduled runs of a suite "
                       "against the offline fake models (timestamps backdated day by day), run "
                       "the nightly flow, then serve the API until interrupted.")
    p.add_argument("--days", type=int, default=35,
                   help="days of history to simulate (default 35: a 7-day window + 28 baseline)")
    p.add_argument("--suite", default="smoke", help="suite to run (default: smoke)")
    p.add_argument("--models", nargs="+", default=["fake/stable", "fake/drifting"],
                   help="models to simulate (default: fake/stable fake/drifting)")
    p.add_argument("--no-serve", action="store_true",
                   help="stop after writing the summaries and print where they are")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    _add_verbose(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run a suite against models now (the run-suite flow)",
                       description="Run a suite against one or more models with the run-suite "
                       "flow and print the per-model summary.")
    p.add_argument("--suite", default="smoke", help="suite name or folder (default: smoke)")
    p.add_argument("--models", nargs="+", default=["fake/stable"],
                   help="model ids, provider/model (default: fake/stable)")
    p.add_argument("--samples", type=int, help="samples per case (default: the suite's)")
    p.add_argument("--temperature", type=float, help="temperature (default: the suite's)")
    p.add_argument("--seed", type=int, help="seed (default: the suite's)")
    p.add_argument("--max-tokens", type=int, help="max output tokens (default: the suite's)")
    p.add_argument("--run-id", help="re-use a run id to resume it")
    _add_verbose(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("nightly", help="compact, aggregate and publish summaries now",
                       description="Run the nightly flow once: compaction, aggregation, "
                       "publishing of summaries/latest/.")
    _add_verbose(p)
    p.set_defaults(func=cmd_nightly)

    p = sub.add_parser("api", help="serve the read/submit API",
                       description="Serve the FastAPI app (summaries, submissions) with uvicorn.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("suites", help="list and validate prompt suites",
                       description="List the shipped suites or validate suite folders.")
    ssub = p.add_subparsers(dest="suites_command", required=True, metavar="SUBCOMMAND")
    q = ssub.add_parser("list", help="list the shipped suites with case counts and hashes",
                        description="List the shipped suites: name, version, case count, tier "
                        "and suite hash.")
    q.set_defaults(func=cmd_suites_list)
    q = ssub.add_parser("validate", help="validate suite folders; exit 1 on any problem",
                        description="Load each suite folder and report the first problem found "
                        "(file, line, field); exit 1 if any suite is invalid.")
    q.add_argument("paths", nargs="+", type=Path, help="suite folders (or shipped suite names)")
    q.set_defaults(func=cmd_suites_validate)

    p = sub.add_parser("models", help="list provider prefixes and offline models",
                       description="List the provider prefixes Plumbline knows and the "
                       "offline fake models.")
    p.set_defaults(func=cmd_models)
    _add_orchestration_commands(sub)
    return parser


def _add_orchestration_commands(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve every deployment with its schedule from one process",
                       description="Register the run-suite, daily-canary (06:00 UTC), nightly "
                       "(02:00 UTC) and compaction deployments with the Prefect server at "
                       "PREFECT_API_URL and run their flow runs in this process until "
                       "interrupted (the embedded default: no work pool, no worker).")
    p.add_argument("--limit", type=int, default=None,
                   help="most flow runs at once (default: no limit)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("up", help="start the Prefect server and UI, the served flows and the API",
                       description="Start a local Prefect server with its UI, serve every "
                       "deployment with its schedule, and serve the Plumbline API; print their "
                       "URLs; stop all of them together on Ctrl-C or SIGTERM.")
    p.add_argument("--host", default="127.0.0.1", help="interface for both servers")
    p.add_argument("--prefect-port", type=int, default=4200,
                   help="Prefect server and UI port (default 4200)")
    p.add_argument("--api-port", type=int, default=8000,
                   help="Plumbline API port (default 8000)")
    p.add_argument("--startup-timeout", type=float, default=180.0,
                   help="seconds to wait for each part to come up (default 180)")
    _add_verbose(p)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("submit", help="post a run's results to a Plumbline API",
                       description="Post results to a Plumbline API's /api/submit in the "
                       "Pramana payload, one result per request; waits out HTTP 429 as "
                       "Retry-After says and retries server errors. RESULTS is a run id in the "
                       "local store or a .parquet/.jsonl file of records (or of Pramana "
                       "payloads). Exit 1 if any result failed.")
    p.add_argument("results", metavar="RESULTS",
                   help="a run id (looked up in the configured store) or a .parquet/.jsonl file")
    p.add_argument("--api-url", required=True,
                   help="the API's base URL, e.g. https://plumbline.example.org")
    p.add_argument("--token", default=None,
                   help="a Bearer token (JWT) to submit as a signed-in user "
                   "(default: $PLUMBLINE_API_TOKEN, else anonymous)")
    p.set_defaults(func=cmd_submit)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except PlumblineError as exc:
        print(f"plumbline: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
