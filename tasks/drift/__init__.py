"""Drift detection: did a model's behaviour move between a recent window and a baseline window?

Every test of a night is computed at once, vectorised in numpy over all groups (per model, per
suite, per prompt), never in a Python loop over groups:

- pass rate: Fisher's exact test, or chi-square with Yates' correction once every expected cell
  count is at least 5; a Wilson interval on the recent rate;
- score, latency, output length: Mann–Whitney U (normal approximation with tie and continuity
  correction, as scipy's ``method="asymptotic"``) with Cliff's delta as the effect size;
- consistency: the share of prompts whose set of output hashes is unchanged from the previous day
  (Pramana's bands), tested against the baseline's day-over-day change rate;
- weighted Benjamini–Hochberg over every test of the night, then one verdict per model.

The modules, imported in one direction (each only imports those above it):

- ``stats``: the vectorised kernels (numpy/scipy);
- ``config``: ``DriftConfig`` and the recent/baseline ``Window``;
- ``verdicts``: the bands, the night's BH adjustment, the verdict rules and reasons;
- ``metrics``: the window's groups and the tests per metric;
- ``report``: ``compute_drift``, which wires metrics → adjust → verdicts for one kind of evidence,
  ``DriftReport``, and ``compute_reports``: the project's report (the verdicts) and the
  community's (its own tests, BH family and verdicts, labelled) over one window.
- ``changepoint`` (imports none of the above): when a flagged model's change began, from the
  daily series of the metric that carried its verdict (called by the nightly's evidence stage,
  which has the history).

docs/drift.md explains the choices and reports the false-positive rate and power measured on
simulated histories with known truth (``tests/tasks/drift/test_drift_simulation.py``).
"""
