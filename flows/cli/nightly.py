"""``plumbline nightly``: the nightly flow once, now; prints its result as JSON for scripts."""

from __future__ import annotations

import json

from flows.cli.common import Verbose, quiet_prefect


def nightly(*, verbose: Verbose = False) -> int:
    """Compact, aggregate, test for drift and publish summaries now.

    Run the nightly flow once: compaction, aggregation, drift tests, publishing of
    summaries/latest/; print its result as JSON.
    """
    quiet_prefect(verbose)
    # Prefect reads its logging settings once, when first imported: after quiet_prefect.
    from flows.nightly import nightly as nightly_flow

    out = nightly_flow()
    print(json.dumps(out, indent=2, default=str))
    return 0
