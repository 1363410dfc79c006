"""The meaning-drift step of the summaries stage: embed each distinct output once, then hand the
drift stage one distance per prompt and day (``tasks.drift.semantic``).

The cache: one Parquet file per day (``layout.embedding_cache_key``) holding the unit vectors of
that day's distinct answered outputs, keyed by output hash. A night checks each window day's file
against the day's summary (its ``output_hashes``); a day whose set of hashes is unchanged is not
touched, and a day being (re)built takes every vector it can from the other days' files (an
answer repeated across days is embedded once), so only outputs never seen in the window are
embedded. Their text is read from that day's raw files only: two columns, filtered to the
missing hashes as they are scanned. Files of days outside the window are removed, so the cache
holds the window and nothing of a row a GDPR operation deleted outlives its day's re-aggregation.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from datetime import date

import numpy as np
import polars as pl

from tasks import embeddings
from tasks.drift.config import EVIDENCE_PROJECT, Window
from tasks.drift.semantic import DISTANCE_SCHEMA, SemanticInput, day_distances, sum_by_group
from tasks.records.io import read_records
from tasks.records.live import live_keys
from tasks.storage.base import ObjectStore
from tasks.storage.layout import (
    day_of_embedding_key,
    day_prefix,
    embedding_cache_key,
    embedding_cache_prefix,
)

logger = logging.getLogger("plumbline.embedding")

Encoder = Callable[[list[str]], np.ndarray]
# A day's vectors as a frame: ``output_hash`` and ``vector`` (a fixed-size array). The cache
# stores unit vectors quantised to int8 (component × 127): a quarter of float32's bytes, and the
# rounding (≤ 0.004 per component) moves a cosine distance by about 1e-3, far below the
# day-to-day spread of a prompt's distances that the test measures.
QUANT = 127.0
# Vectors a night keeps in memory while it builds the cache (384 bytes each: ~190 MB).
POOL_VECTORS = 500_000
VectorSource = Callable[[date], pl.DataFrame]

PROMPT_KEYS = ["evidence", "model_id", "suite", "prompt_id"]
# The summary columns this step reads.
SUMMARY_COLUMNS = ["date", *PROMPT_KEYS, "output_hashes"]
# Distinct outputs per prompt and day that are embedded and measured: the first ones of the
# day's sorted hashes, a uniform sample since a hash is a digest of the text. At temperature 0.7
# every sample is new; three samples already give a day's distance, and the cap keeps a
# many-samples suite's embedding cost in check (docs/drift.md).
MAX_OUTPUTS_PER_PROMPT_DAY = 5


def _sampled() -> pl.Expr:
    return pl.col("output_hashes").list.head(MAX_OUTPUTS_PER_PROMPT_DAY)


def _vector_frame(hashes: list[str], vectors: np.ndarray) -> pl.DataFrame:
    dim = vectors.shape[1] if vectors.ndim == 2 else embeddings.DIMENSIONS
    quantised = np.clip(np.rint(vectors.reshape(len(hashes), dim) * QUANT), -QUANT, QUANT)
    return pl.DataFrame({
        "output_hash": pl.Series(hashes, dtype=pl.String),
        "vector": pl.Series(quantised.astype(np.int8), dtype=pl.Array(pl.Int8, dim)),
    })


def _read_cache(store: ObjectStore, key: str, columns: list[str] | None = None,
                only: list[str] | None = None) -> pl.DataFrame | None:
    path = store.local_path(key)
    try:
        if path is not None:
            if not path.is_file():
                return None
            lazy = pl.scan_parquet(str(path))
        else:
            lazy = pl.read_parquet(io.BytesIO(store.get(key))).lazy()
    except KeyError:
        return None
    if only is not None:
        lazy = lazy.filter(pl.col("output_hash").is_in(only))
    return (lazy.select(columns) if columns else lazy).collect()


def day_hashes(daily: pl.DataFrame, day: date) -> list[str]:
    """The distinct answered output hashes of one day's summary rows that are measured (at most
    ``MAX_OUTPUTS_PER_PROMPT_DAY`` per prompt), sorted."""
    rows = daily.filter(pl.col("date") == day)
    if rows.is_empty():
        return []
    return rows.select(_sampled()).to_series().explode().drop_nulls().unique().sort().to_list()


def _texts(store: ObjectStore, day: date, missing: list[str]) -> pl.DataFrame:
    """``output_hash`` → ``output`` for the missing hashes, from the day's raw files only."""
    keys = live_keys(store, day_prefix(day))
    if not keys or not missing:
        return pl.DataFrame(schema={"output_hash": pl.String, "output": pl.String})
    paths = [store.local_path(k) for k in keys]
    wanted = (pl.col("error").is_null() & pl.col("output").is_not_null()
              & pl.col("output_hash").is_in(missing))
    if all(p is not None and p.is_file() for p in paths):
        lazy = pl.scan_parquet([str(p) for p in paths], hive_partitioning=False,
                               missing_columns="insert", extra_columns="ignore")
        frame = lazy.select("output_hash", "output", "error").filter(wanted).collect()
    else:
        table = read_records(store, keys, columns=["output_hash", "output", "error"])
        frame = pl.from_arrow(table).filter(wanted)  # type: ignore[union-attr]
    return frame.unique("output_hash", keep="first").select("output_hash", "output")


def refresh_cache(
    store: ObjectStore, daily: pl.DataFrame, days: Iterable[date], encode: Encoder,
    encoder: str = embeddings.ENCODER_NAME,
) -> tuple[int, int]:
    """Bring the cache files of ``days`` in line with their summaries (``daily``: the days'
    ``date`` and ``output_hashes``); remove files of other days. Returns (outputs embedded,
    vectors reused from other days' files)."""
    days = sorted(set(days))
    embedded = reused = 0
    hashes = pl.DataFrame(schema={"output_hash": pl.String})
    # Where each cached vector can be read: every existing file of the window (a file's vectors
    # are right for its hashes even when its day's set of hashes changed), newest day first.
    on_file: dict[date, pl.DataFrame] = {}
    for day in days:
        have = _read_cache(store, embedding_cache_key(encoder, day), ["output_hash"])
        if have is not None:
            on_file[day] = have
    index = (pl.concat([h.with_columns(day=pl.lit(d, pl.Date)) for d, h in on_file.items()])
             .unique("output_hash", keep="last") if on_file
             else pl.DataFrame(schema={"output_hash": pl.String, "day": pl.Date}))
    # The vectors built this night, in memory up to POOL_VECTORS (the next day mostly repeats
    # the last ones); older ones are read back from their files through ``index``.
    pool = pl.DataFrame(schema={"output_hash": pl.String, "vector": pl.Array(pl.Int8, 1)})
    for day in days:
        key = embedding_cache_key(encoder, day)
        needed = day_hashes(daily, day)
        have = on_file.get(day)
        if have is not None and have["output_hash"].sort().to_list() == needed:
            continue
        if not needed:
            store.delete(key)
            continue
        want = pl.DataFrame({"output_hash": needed}, schema=hashes.schema)
        parts = []
        if pool.height:
            parts.append(pool.join(want, on="output_hash", how="semi"))
            want = want.join(parts[-1], on="output_hash", how="anti")
        # One filtered read per file that holds some of the rest.
        sources = want.join(index, on="output_hash", how="inner")
        for (source,), part in sources.partition_by("day", as_dict=True).items():
            found = _read_cache(store, embedding_cache_key(encoder, source), None,
                                part["output_hash"].to_list())
            if found is not None and found.height:
                parts.append(found)
        if parts:
            want = want.join(pl.concat([p.select("output_hash") for p in parts]),
                             on="output_hash", how="anti")
        reused += sum(p.height for p in parts)
        if want.height:
            texts = _texts(store, day, want["output_hash"].to_list())
            if texts.height:
                # One forward pass per distinct text (hashes of equal texts can differ when a
                # writer hashed more than the text).
                distinct = texts["output"].unique(maintain_order=True)
                vectors = encode(distinct.to_list())
                at = texts.join(distinct.to_frame().with_row_index("at"), on="output",
                                how="left")["at"].to_numpy()
                parts.append(_vector_frame(texts["output_hash"].to_list(), vectors[at]))
                embedded += distinct.len()
        if not parts:
            store.delete(key)
            continue
        frame = pl.concat([p.select("output_hash", "vector") for p in parts]) \
            .unique("output_hash").sort("output_hash")
        buf = io.BytesIO()
        frame.write_parquet(buf, compression="zstd", compression_level=1)
        store.put(key, buf.getvalue())
        pool = (pl.concat([pool, frame]) if pool.height else frame) \
            .unique("output_hash", keep="last", maintain_order=True).tail(POOL_VECTORS)
        index = pl.concat([index, frame.select("output_hash", day=pl.lit(day, pl.Date))]) \
            .unique("output_hash", keep="last")
    keep = {embedding_cache_key(encoder, d) for d in days}
    for obj in store.list(embedding_cache_prefix(encoder)):
        if obj.key not in keep and day_of_embedding_key(encoder, obj.key) is not None:
            store.delete(obj.key)
    return embedded, reused


def window_distances(daily: pl.DataFrame, window: Window, vectors: VectorSource) -> pl.DataFrame:
    """One row per prompt and day of the window (``DISTANCE_SCHEMA``): the day's distance to
    the prompt's baseline centroid (``tasks.drift.semantic``). Two passes over the days: the
    baseline's sums first, then each day's distances; memory holds one day's vectors and one
    sum per prompt."""
    if daily.is_empty():
        return pl.DataFrame(schema=DISTANCE_SCHEMA)
    if "evidence" not in daily.columns:
        daily = daily.with_columns(evidence=pl.lit(EVIDENCE_PROJECT))
    frame = daily.filter(pl.col("date").is_between(window.baseline_start, window.as_of)) \
        .select(SUMMARY_COLUMNS).with_columns(
            gid=(pl.struct(PROMPT_KEYS).rank("dense") - 1).cast(pl.Int64))
    if frame.is_empty():
        return pl.DataFrame(schema=DISTANCE_SCHEMA)
    n_groups = int(frame["gid"].max()) + 1  # type: ignore[arg-type]
    days = sorted(frame["date"].unique().to_list())

    def sums(day: date) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pairs = (frame.filter(pl.col("date") == day).select("gid", _sampled())
                 .explode("output_hashes").drop_nulls("output_hashes")
                 .unique().rename({"output_hashes": "output_hash"}))
        vec = vectors(day)
        joined = pairs.join(vec, on="output_hash", how="inner")
        gid = joined["gid"].to_numpy()
        present = np.unique(gid)
        if joined.is_empty():
            return present, np.zeros((0, 1)), np.zeros(0)
        matrix = joined["vector"].to_numpy()
        per_group = sum_by_group(gid, matrix, n_groups)
        if matrix.dtype.kind == "i":  # the cache's int8 form, summed exactly as integers
            per_group /= QUANT
        counts = np.bincount(gid, minlength=n_groups).astype(np.float64)
        return present, per_group[present], counts[present]

    baseline_days = [d for d in days if d < window.recent_start]
    total: np.ndarray | None = None
    for day in baseline_days:
        present, s, _ = sums(day)
        if present.size:
            if total is None:
                total = np.zeros((n_groups, s.shape[1]))
            total[present] += s
    if total is None:
        return pl.DataFrame(schema=DISTANCE_SCHEMA)
    keys = frame.unique("gid").sort("gid").select(PROMPT_KEYS)
    out = []
    for day in days:
        present, s, n = sums(day)
        if not present.size:
            continue
        dist = day_distances(s, n, total[present], leave_out=day < window.recent_start)
        out.append(keys[present].with_columns(
            date=pl.lit(day, pl.Date), outputs=pl.Series(n.astype(np.int64)),
            distance=pl.Series(dist)))
    if not out:
        return pl.DataFrame(schema=DISTANCE_SCHEMA)
    return pl.concat(out).select(list(DISTANCE_SCHEMA)).cast(DISTANCE_SCHEMA)  # type: ignore[arg-type]


def semantic_input(
    store: ObjectStore, daily: pl.DataFrame, window: Window, encode: Encoder | None = None,
    encoder: str = embeddings.ENCODER_NAME,
) -> SemanticInput:
    """The night's meaning-drift input over the window's summaries (``daily``, with
    ``output_hashes``): the cache refreshed, then the prompt-day distances. ``encode`` defaults
    to the local model; without the ``embeddings`` extra the metric is skipped, saying why."""
    if encode is None:
        if not embeddings.available():
            return SemanticInput(None, f"the semantic metric {embeddings.INSTALL_HINT}")
        encode = embeddings.encode
    if daily.is_empty() or "output_hashes" not in daily.columns:
        return SemanticInput(None, "no output hashes in the daily summaries", encoder)
    try:
        embedded, reused = refresh_cache(store, daily, window.days(), encode, encoder)

        def cached(day: date) -> pl.DataFrame:
            found = _read_cache(store, embedding_cache_key(encoder, day))
            return found if found is not None else _vector_frame([], np.zeros((0, 1)))

        distances = window_distances(daily, window, cached)
    except Exception as exc:  # a broken model must cost the night one metric, not the night
        logger.exception("semantic metric skipped")
        return SemanticInput(None, f"embedding failed: {type(exc).__name__}: {exc}"[:300],
                             encoder)
    return SemanticInput(distances, None, encoder, embedded, reused)
