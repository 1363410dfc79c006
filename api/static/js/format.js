// How the dashboard writes numbers, rates, durations and dates, so every view says a value the
// same way. Pure functions: no DOM, no network.

export const DAY_MS = 86400000;

export const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const intFmt = new Intl.NumberFormat("en-US");

export function fmtInt(v) { return isNum(v) ? intFmt.format(Math.round(v)) : "—"; }

// Rates and consistency are fractions in [0, 1]; a value above 1 is taken as already a percentage.
export function fmtPct(v, digits = 1) {
  if (!isNum(v)) return "—";
  const pct = v > 1 ? v : v * 100;
  return `${pct.toFixed(digits)}%`;
}

export function fmtMs(v) {
  if (!isNum(v)) return "—";
  return v >= 10000 ? `${(v / 1000).toFixed(1)} s` : `${intFmt.format(Math.round(v))} ms`;
}

export function fmtNum(v) {
  if (!isNum(v)) return "—";
  if (v !== 0 && (Math.abs(v) < 0.001 || Math.abs(v) >= 1e6)) return v.toExponential(2);
  return String(Number(v.toPrecision(3)));
}

export function fmtP(v) {
  if (!isNum(v)) return "—";
  return v < 0.0001 ? "< 0.0001" : v.toFixed(4);
}

// Operators schedule in UTC, so times are shown in UTC, with a relative hint.
export function fmtTime(iso) {
  if (!iso) return null;
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return String(iso);
  const text = `${t.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  const ago = (Date.now() - t.getTime()) / 1000;
  let rel = "";
  if (ago >= 0) {
    if (ago < 90) rel = "just now";
    else if (ago < 5400) rel = `${Math.round(ago / 60)} min ago`;
    else if (ago < 172800) rel = `${Math.round(ago / 3600)} h ago`;
    else rel = `${Math.round(ago / 86400)} days ago`;
  }
  return { text, rel, iso: t.toISOString() };
}

// Days as integers (days since 1970-01-01 UTC), so charts can count gaps between dates.
export function dayNum(isoDate) {
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(String(isoDate || ""));
  return m ? Math.round(Date.UTC(+m[1], +m[2] - 1, +m[3]) / DAY_MS) : null;
}

export function dayStr(n) { return new Date(n * DAY_MS).toISOString().slice(0, 10); }

export function dateOnly(v) { return v ? String(v).slice(0, 10) : "—"; }

// Costs are small (a call costs fractions of a cent): four significant digits, never rounded to 0.
export function fmtUsd(v) {
  if (!isNum(v)) return "—";
  if (v === 0) return "$0";
  return Math.abs(v) >= 1 ? `$${v.toFixed(2)}` : `$${Number(v.toPrecision(3))}`;
}

export function fmtChars(v) { return isNum(v) ? `${intFmt.format(Math.round(v))} chars` : "—"; }

// The drift metrics (drift.json's `metric`), named for people.
export const METRIC_NAMES = {
  pass_rate: "Pass rate", score: "Score", score_mean: "Score", latency_ms: "Latency",
  latency: "Latency", output_len: "Output length", output_length: "Output length",
  consistency: "Consistency", error_rate: "Error rate", cost_usd: "Cost",
  refusal_rate: "Refusal rate", semantic: "Meaning (semantic)",
};
