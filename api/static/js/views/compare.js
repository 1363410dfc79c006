// "Compare models": the models that ran one suite, ranked by that suite's figures over the recent
// window (pass rate, median latency, cost per call), with each model's verdict beside them. The
// figures are models.json's `suite_figures`; a summary without them (an older nightly) still
// ranks single-suite models by their pass rate, the only figure it has per suite.

import { $, h } from "../dom.js";
import { fmtInt, fmtMs, fmtPct, fmtUsd, isNum } from "../format.js";
import { badge } from "../verdicts.js";
import { availabilityBadge } from "./evidence.js";

const RANK_BY = {
  pass_rate: { label: "Pass rate (highest first)", dir: -1 },
  latency: { label: "Latency p50 (fastest first)", dir: 1 },
  cost: { label: "Cost per call (cheapest first)", dir: 1 },
};

function figuresOf(m) {
  return Array.isArray(m.suite_figures) ? m.suite_figures.filter((f) => f && typeof f === "object") : [];
}

/** Every suite some model ran, with how many models ran it. */
function suiteCounts(models) {
  const counts = new Map();
  for (const m of models) {
    const names = new Set(figuresOf(m).map((f) => String(f.suite)));
    for (const s of Array.isArray(m.suites) ? m.suites : []) names.add(String(s));
    for (const s of names) counts.set(s, (counts.get(s) || 0) + 1);
  }
  return counts;
}

/** One row per model that ran `suite`: its figures for that suite (null where unknown). */
export function compareRows(models, suite) {
  const rows = [];
  for (const m of models) {
    const fig = figuresOf(m).find((f) => String(f.suite) === suite);
    const ran = fig || (Array.isArray(m.suites) && m.suites.map(String).includes(suite));
    if (!ran) continue;
    // Without per-suite figures only a single-suite model's own pass rate is that suite's.
    const single = Array.isArray(m.suites) && m.suites.length === 1;
    const rowsRecent = fig ? fig.rows_recent : single ? m.rows_recent : null;
    const cost = fig && isNum(fig.cost_usd_recent) && isNum(fig.rows_recent) && fig.rows_recent > 0
      ? fig.cost_usd_recent / fig.rows_recent : null;
    rows.push({
      model: m, id: String(m.model_id),
      pass_rate: fig ? fig.pass_rate_recent ?? null : single ? m.pass_rate_recent ?? null : null,
      latency: fig ? fig.latency_p50_ms ?? null : null,
      cost, rows: isNum(rowsRecent) ? rowsRecent : null,
    });
  }
  return rows;
}

/** `rows` ranked by `key` (unknown values last), ties broken by the other figures, then id. */
export function rankRows(rows, key) {
  const order = [key, ...Object.keys(RANK_BY).filter((k) => k !== key)];
  const cmp = (a, b) => {
    for (const k of order) {
      const va = a[k], vb = b[k];
      if (isNum(va) !== isNum(vb)) return isNum(va) ? -1 : 1;
      if (isNum(va) && va !== vb) return (va - vb) * RANK_BY[k].dir;
    }
    return a.id.localeCompare(b.id);
  };
  return rows.slice().sort(cmp);
}

function table(suite, rows, key) {
  const ranked = rankRows(rows, key);
  const cols = [["Rank", "num"], ["Model"], ["Verdict"], ["Pass rate", "num"], ["Latency p50", "num"],
    ["Cost per call", "num"], ["Rows (recent)", "num"], ["Availability"]];
  const anyAvailability = rows.some((r) => r.model.availability && typeof r.model.availability === "object");
  const shown = anyAvailability ? cols : cols.slice(0, -1);
  return h("div", { class: "table-scroll" }, h("table", { class: "compare-table", id: "compare-table",
      "data-suite": suite, "data-rank-by": key },
    h("caption", { text: `${rows.length} model${rows.length === 1 ? "" : "s"} that ran ${suite}, ` +
      `ranked by ${RANK_BY[key].label.toLowerCase()}, over the recent window. The verdict is ` +
      "the model's, over all its suites." }),
    h("thead", {}, h("tr", {}, shown.map(([text, cls]) => h("th", { scope: "col", class: cls, text })))),
    h("tbody", {}, ranked.map((r, i) => h("tr", { class: "compare-row", "data-model-id": r.id,
        "data-rank": String(i + 1) },
      h("td", { class: "num", text: String(i + 1) }),
      h("th", { scope: "row" }, h("a", { href: `#model=${encodeURIComponent(r.id)}`, text: r.id })),
      h("td", {}, badge(r.model.verdict)),
      h("td", { class: "num", text: fmtPct(r.pass_rate) }),
      h("td", { class: "num", text: fmtMs(r.latency) }),
      h("td", { class: "num", text: fmtUsd(r.cost) }),
      h("td", { class: "num", text: fmtInt(r.rows) }),
      anyAvailability ? h("td", {}, r.model.availability ? availabilityBadge(r.model.availability.status)
        : "—") : null)))));
}

/** The compare panel: a suite picker, a "rank by" picker and the ranked table. */
export function renderCompare(summaries) {
  const host = $("compare-body");
  const models = summaries.models && Array.isArray(summaries.models.models) ? summaries.models.models : [];
  const counts = suiteCounts(models);
  if (!counts.size) {
    host.replaceChildren(h("p", { class: "empty", id: "compare-empty",
      text: "No suites to compare yet: they appear after the first nightly run." }));
    return;
  }
  // Most-run suite first: it is the one where a comparison says the most.
  const suites = [...counts.keys()].sort((a, b) => counts.get(b) - counts.get(a) || a.localeCompare(b));
  const suiteSel = h("select", { id: "compare-suite" }, suites.map((s) => h("option", { value: s,
    text: `${s} (${counts.get(s)} model${counts.get(s) === 1 ? "" : "s"})` })));
  const rankSel = h("select", { id: "compare-rank" },
    Object.entries(RANK_BY).map(([k, v]) => h("option", { value: k, text: v.label })));
  const out = h("div", { id: "compare-result", "aria-live": "polite" });
  const missing = !models.some((m) => figuresOf(m).length);
  const draw = () => out.replaceChildren(table(suiteSel.value, compareRows(models, suiteSel.value),
    rankSel.value));
  suiteSel.addEventListener("change", draw);
  rankSel.addEventListener("change", draw);
  // replaceChildren would write a null as the text "null": only nodes go in.
  host.replaceChildren(...[
    h("div", { class: "controls" },
      h("label", { for: "compare-suite", text: "Suite" }), suiteSel,
      h("label", { for: "compare-rank", text: "Rank by" }), rankSel),
    missing ? h("p", { class: "hint", id: "compare-no-figures", text: "This summary has no per-suite " +
      "figures (it was written by an older nightly run): latency and cost are unknown, and pass " +
      "rates are shown only for models that ran one suite." }) : null,
    out].filter(Boolean));
  draw();
}
