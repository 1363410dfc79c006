"""Who produced a row and how: the values of a record's ``user_id`` and ``source``.

They also name the raw partitions (``user=scheduler/``, ``{source}_{ts}_{uuid8}.parquet``), so
both the record schema and the storage layout use them; they live below both.
"""

from __future__ import annotations

# Values of `source`.
SOURCE_SCHEDULED = "scheduled"
SOURCE_ON_DEMAND = "on_demand"
SOURCE_COMMUNITY = "community"
SOURCES = (SOURCE_SCHEDULED, SOURCE_ON_DEMAND, SOURCE_COMMUNITY)

# Special values of `user_id` besides a 16-hex user id.
USER_SCHEDULER = "scheduler"
USER_ANONYMOUS = "anonymous"
