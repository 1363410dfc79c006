// "Submissions per day": one small bar chart per model, ordered like the models table, and the
// same numbers as a table.

import { barChart } from "../charts.js";
import { $, h } from "../dom.js";
import { dayNum, dayStr, fmtInt, isNum } from "../format.js";
import { sortModels } from "../verdicts.js";

// The per-model submission charts show at most this many recent days, so bars stay legible.
const CHART_DAYS = 90;

export function renderSubmissions(summaries) {
  const host = $("chart");
  const chart = summaries.chart || {};
  const data = Array.isArray(chart.data) ? chart.data : [];
  const models = Array.isArray(chart.models) ? chart.models.map(String) : [];
  if (!data.length || !models.length) {
    host.replaceChildren(h("p", { class: "empty", id: "chart-empty", text: "No submissions stored yet." }));
    return;
  }
  const byDay = new Map();
  for (const row of data) {
    const d = dayNum(row.date);
    if (d !== null) byDay.set(d, row);
  }
  const allDays = [...byDay.keys()].sort((a, b) => a - b);
  const last = allDays[allDays.length - 1];
  const first = Math.max(allDays[0], last - CHART_DAYS + 1);
  const days = [];
  for (let d = first; d <= last; d++) days.push(d);
  const labels = days.map(dayStr);

  // Order the small multiples like the table (most worrying first), then the rest by name.
  const verdicts = new Map(sortModels(summaries.models).map((m, i) => [String(m.model_id), i]));
  const rank = (id) => (verdicts.has(id) ? verdicts.get(id) : 1e9);
  const ordered = models.slice().sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));

  const figures = ordered.map((id) => {
    const counts = days.map((d) => { const v = (byDay.get(d) || {})[id]; return isNum(v) ? v : 0; });
    let total = 0;
    for (const row of data) if (isNum(row[id])) total += row[id];
    return h("figure", { class: "multiple" },
      h("figcaption", {}, h("span", { class: "name", text: id, title: id }),
        h("span", { class: "total", text: `${fmtInt(total)} total` })),
      barChart(id, labels, counts));
  });

  const table = h("details", { class: "data-table" },
    h("summary", { text: "Show as a table" }),
    h("div", { class: "table-scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Date" }),
        ordered.map((id) => h("th", { scope: "col", class: "num", text: id })))),
      h("tbody", {}, data.slice().reverse().map((row) => h("tr", {},
        h("th", { scope: "row", text: String(row.date) }),
        ordered.map((id) => h("td", { class: "num", text: fmtInt(isNum(row[id]) ? row[id] : 0) }))))))));

  const note = allDays[0] < first
    ? h("p", { class: "hint", text: `Showing the last ${CHART_DAYS} days; totals cover all data.` })
    : null;
  host.replaceChildren(note || "", h("div", { class: "multiples" }, figures), table);
}
