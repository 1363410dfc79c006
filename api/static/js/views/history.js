// A model's daily history from the project's own runs: one line chart per figure (pass rate,
// latency, consistency, output length, error rate, refusal rate, cost), each with the recent
// window shaded and the estimated change point marked, then the same numbers as a table.

import { lineChart } from "../charts.js";
import { h } from "../dom.js";
import { METRIC_NAMES, dayNum, dayStr, fmtChars, fmtInt, fmtMs, fmtNum, fmtPct, fmtUsd, isNum } from "../format.js";

// Each chart: the history field it draws, its title, how values read, and its CSS classes.
// `rate` charts run from 0 to 100 %; the others are scaled to their data. A field that no day
// carries (a nightly older than the field) draws "no data" instead of an empty axis.
export const HISTORY_CHARTS = [
  { field: "pass_rate", title: "Pass rate", cls: "pass-rate-chart", rate: true, line: "a",
    what: "Pass rate" },
  { field: "latency_p50_ms", title: "Latency p50", cls: "latency-chart", format: fmtMs, line: "b",
    what: "Median latency" },
  { field: "consistency", title: "Consistency", cls: "consistency-chart", rate: true, line: "a",
    what: "Share of prompts with the same outputs as the day before" },
  { field: "output_len_mean", title: "Output length", cls: "output-length-chart", format: fmtChars,
    line: "b", what: "Mean output length" },
  { field: "error_rate", title: "Error rate", cls: "error-rate-chart", rate: true, line: "c",
    what: "Share of calls that failed" },
  { field: "refusal_rate", title: "Refusal rate", cls: "refusal-rate-chart", rate: true, line: "c",
    what: "Share of answers that were refusals" },
  { field: "cost_usd", title: "Cost per day", cls: "cost-chart", format: fmtUsd, line: "b",
    what: "Cost in USD" },
];

/** models.json's change_point as a chart marker ({day, earliest, latest, label}), or null. */
export function changeMarker(summary) {
  const cp = summary && summary.change_point && typeof summary.change_point === "object"
    ? summary.change_point : null;
  const day = cp ? dayNum(cp.date) : null;
  if (day === null) return null;
  const earliest = dayNum(cp.earliest), latest = dayNum(cp.latest);
  const range = earliest !== null && latest !== null && latest > earliest
    ? ` (between ${String(cp.earliest).slice(0, 10)} and ${String(cp.latest).slice(0, 10)})` : "";
  return { day, earliest, latest, metric: cp.metric ? String(cp.metric) : null,
    label: `change began on or about ${String(cp.date).slice(0, 10)}${range}` };
}

function chartFigure(modelId, days, spec, win, marker) {
  const points = days.map((d) => ({ day: dayNum(d.date), value: isNum(d[spec.field]) ? d[spec.field] : null }));
  const vals = points.map((p) => p.value).filter(isNum);
  const caption = h("figcaption", {}, h("span", { class: "name", text: spec.title }),
    vals.length ? h("span", { class: "total", text: `latest ${fmtValue(spec, vals[vals.length - 1])}` }) : null);
  if (!vals.length) {
    return h("figure", { class: "history-figure", "data-field": spec.field }, caption,
      h("p", { class: "empty chart-empty", text: `No data: ${spec.title.toLowerCase()} is not ` +
        "in this model's published history yet." }));
  }
  const label = `${spec.what} per day for ${modelId}, ${days.length} days, latest ` +
    `${fmtValue(spec, vals[vals.length - 1])}${marker ? `; ${marker.label}` : ""}`;
  return h("figure", { class: "history-figure", "data-field": spec.field }, caption,
    lineChart(points, {
      yMax: spec.rate ? (vals.some((v) => v > 1) ? 100 : 1) : undefined,
      format: spec.rate ? (v) => fmtPct(v, 0) : spec.format,
      valueFormat: (v) => fmtValue(spec, v),
      label, lineCls: `line-${spec.line}`, dotCls: `dot-${spec.line}`, cls: spec.cls, window: win,
      marker }));
}

function metricName(metric) { return (METRIC_NAMES[metric] || metric.replaceAll("_", " ")).toLowerCase(); }

function fmtValue(spec, v) { return spec.rate ? fmtPct(v) : spec.format(v); }

export function historyTable(days, label = "Show daily history as a table") {
  const columns = ["Date", "Rows", "Pass rate", "Score", "Latency p50", "Latency p95", "Distinct outputs",
    "Output length", "Errors", "Error rate", "Refusal rate", "Cost (USD)", "Consistency"];
  return h("details", { class: "data-table" }, h("summary", { text: label }),
    h("div", { class: "table-scroll" }, h("table", {},
      h("thead", {}, h("tr", {},
        columns.map((t, i) => h("th", { scope: "col", class: i ? "num" : null, text: t })))),
      h("tbody", {}, days.slice().reverse().map((d) => h("tr", {},
        h("th", { scope: "row", text: String(d.date) }),
        h("td", { class: "num", text: fmtInt(d.rows) }),
        h("td", { class: "num", text: fmtPct(d.pass_rate) }),
        h("td", { class: "num", text: fmtNum(d.score_mean) }),
        h("td", { class: "num", text: fmtMs(d.latency_p50_ms) }),
        h("td", { class: "num", text: fmtMs(d.latency_p95_ms) }),
        h("td", { class: "num", text: fmtInt(d.distinct_outputs) }),
        h("td", { class: "num", text: fmtInt(d.output_len_mean) }),
        h("td", { class: "num", text: fmtInt(d.errors) }),
        h("td", { class: "num", text: fmtPct(d.error_rate) }),
        h("td", { class: "num", text: fmtPct(d.refusal_rate) }),
        h("td", { class: "num", text: isNum(d.cost_usd) ? d.cost_usd.toFixed(4) : "—" }),
        h("td", { class: "num", text: fmtPct(d.consistency) })))))));
}

/** The history section of a model's view: `result` is loadHistory's answer. */
export function historySection(modelId, result, win, marker) {
  const section = h("section", { "aria-labelledby": "history-heading", id: "history" },
    h("h3", { id: "history-heading", text: "History" }));
  const days = result.ok && result.data && Array.isArray(result.data.days) ? result.data.days : [];
  if (!days.length) {
    section.append(h("p", { class: "empty", id: "history-empty",
      text: result.ok || result.status === 404
        ? "No daily history from the project's own runs for this model yet."
        : `Could not load the history (${result.status ? `HTTP ${result.status}` : "network error"}).` }));
    return section;
  }
  const notes = [];
  if (win) notes.push("The shaded band is the recent window the drift tests compare with the baseline.");
  if (marker) {
    notes.push(`The dashed line marks the estimated start of the change: ${marker.label}` +
      `${marker.metric ? `, estimated from the daily ${metricName(marker.metric)}` : ""}; ` +
      "the amber band is the range of days it could be.");
  }
  // (append writes a null as the text "null": absent parts are filtered out.)
  section.append(...[
    marker ? h("p", { class: "change-note", id: "change-point", "data-date": dayStr(marker.day) },
      h("strong", { text: "Change began on or about " }),
      h("time", { datetime: dayStr(marker.day), text: dayStr(marker.day) }),
      marker.earliest !== null && marker.latest !== null && marker.latest > marker.earliest
        ? ` (between ${dayStr(marker.earliest)} and ${dayStr(marker.latest)})` : "") : null,
    notes.length ? h("p", { class: "hint", text: notes.join(" ") }) : null,
    h("div", { class: "chart-grid" },
      HISTORY_CHARTS.map((spec) => chartFigure(modelId, days, spec, win, marker))),
    historyTable(days)].filter(Boolean));
  return section;
}
