// The model view: one model's summary, its availability (apart from the verdict), its daily
// history (views/history.js: charts with the change-point marker, and a table), the before/after
// panel (views/evidence.js) and its significant drift tests, all from the project's own runs;
// then, labelled and apart, what community submissions say (their verdict, days and tests).

import { loadEvidence, loadHistory } from "../api.js";
import { $, h } from "../dom.js";
import { METRIC_NAMES, dateOnly, dayNum, fmtInt, fmtMs, fmtNum, fmtP, fmtPct, isNum } from "../format.js";
import { badge, communityBadge, sortModels } from "../verdicts.js";
import { availabilitySection, evidenceSection } from "./evidence.js";
import { changeMarker, historySection, historyTable } from "./history.js";

const TEST_NAMES = {
  fisher_exact: "Fisher's exact", fisher: "Fisher's exact", chi_square: "χ²", chi2: "χ²",
  mann_whitney_u: "Mann–Whitney U", mannwhitneyu: "Mann–Whitney U", mann_whitney: "Mann–Whitney U",
  consistency: "Output consistency", worst_day_t: "Worst-day t (prediction interval)",
};
const nameOf = (names, key) => (key === null || key === undefined ? "—" : names[key] || String(key));

function metricFormatter(metric) {
  const m = String(metric || "");
  if (/pass|rate|consisten/.test(m)) return fmtPct;
  if (/latency|_ms$/.test(m)) return fmtMs;
  return fmtNum;
}

function recentWindow(summaries) {
  const w = summaries.models && summaries.models.window;
  const end = w ? dayNum(w.as_of) : null;
  if (end === null || !isNum(w.recent_days)) return null;
  return { start: end - w.recent_days + 1, end };
}

// The ids of the project's drift section; the community's section uses its own.
const PROJECT_DRIFT = { section: "drift-tests", heading: "drift-heading", none: "drift-none",
  row: "drift-row", title: "Significant drift tests" };
const COMMUNITY_DRIFT = { section: "community-drift-tests", heading: "community-drift-heading",
  none: "community-drift-none", row: "community-drift-row",
  title: "Significant tests of community submissions" };

function driftSection(modelId, tests, ids = PROJECT_DRIFT, semantic = null) {
  const section = h("section", { "aria-labelledby": ids.heading, id: ids.section },
    h("h3", { id: ids.heading, text: ids.title }));
  // Without the `embeddings` extra the meaning-drift metric is skipped: said, not hidden.
  if (semantic && typeof semantic === "object" && semantic.status === "skipped") {
    section.append(h("p", { class: "hint", id: "semantic-skipped",
      text: `Meaning drift (semantic) was not tested this night${semantic.reason
        ? `: ${String(semantic.reason).slice(0, 300)}` : "."}` }));
  }
  if (!Array.isArray(tests)) {
    section.append(h("p", { class: "empty",
      text: "No drift report yet (it is written by the nightly run)." }));
    return section;
  }
  const mine = tests.filter((t) => t.model_id === modelId);
  const sig = mine.filter((t) => t.significant === true)
    .sort((a, b) => (a.p_adjusted ?? 1) - (b.p_adjusted ?? 1));
  if (!sig.length) {
    section.append(h("p", { class: "empty", id: ids.none,
      text: `None: ${mine.length} test${mine.length === 1 ? "" : "s"} run for this model, ` +
        "none significant after Benjamini–Hochberg correction." }));
    return section;
  }
  const columns = ["Suite", "Prompt", "Metric", "Test", "Recent", "Baseline", "Effect", "p (adjusted)",
    "n (recent / baseline)"];
  section.append(h("div", { class: "table-scroll" }, h("table", { class: "drift-table" },
    h("caption", { text: `${sig.length} of ${mine.length} tests significant after ` +
      "Benjamini–Hochberg correction, strongest evidence first." }),
    h("thead", {}, h("tr", {},
      columns.map((t, i) => h("th", { scope: "col", class: i >= 4 ? "num" : null, text: t })))),
    h("tbody", {}, sig.map((t) => {
      const f = metricFormatter(t.metric);
      return h("tr", { class: ids.row, "data-metric": t.metric },
        h("td", { text: t.suite || "all suites" }),
        h("td", { text: t.prompt_id || "all prompts" }),
        h("td", { text: nameOf(METRIC_NAMES, t.metric), title: t.metric ?? null }),
        h("td", { text: nameOf(TEST_NAMES, t.test), title: t.test ?? null }),
        h("td", { class: "num", text: f(t.recent_value) }),
        h("td", { class: "num", text: f(t.baseline_value) }),
        h("td", { class: "num" }, isNum(t.effect_size) ? fmtNum(t.effect_size) : "—",
          t.effect_measure
            ? h("span", { class: "sub", text: String(t.effect_measure).replaceAll("_", " ") })
            : null),
        h("td", { class: "num", text: fmtP(t.p_adjusted) }),
        h("td", { class: "num", text: `${fmtInt(t.n_recent)} / ${fmtInt(t.n_baseline)}` }));
    })))));
  return section;
}

function summaryFacts(summary) {
  if (!summary) return h("p", { class: "empty", text: "This model is not in the latest nightly summary." });
  const fact = (term, value) => h("div", {}, h("dt", { text: term }), h("dd", { text: value }));
  const band = summary.consistency_band ? ` (${summary.consistency_band})` : "";
  return h("dl", { class: "detail-meta" },
    fact("Evidence", "Project runs (scheduled, on-demand)"),
    fact("Pass rate now", fmtPct(summary.pass_rate_recent)),
    fact("Baseline", fmtPct(summary.pass_rate_baseline)),
    fact("Consistency", `${fmtPct(summary.consistency)}${band}`),
    fact("Rows recent / baseline", `${fmtInt(summary.rows_recent)} / ${fmtInt(summary.rows_baseline)}`),
    fact("Last seen", dateOnly(summary.last_seen)));
}

/** What community submissions say about the model: labelled, apart from its verdict. */
function communitySection(modelId, summary, result, drift) {
  const c = summary && summary.community && typeof summary.community === "object" ? summary.community : null;
  const days = result.ok && result.data && Array.isArray(result.data.community_days)
    ? result.data.community_days : [];
  const section = h("section", { "aria-labelledby": "community-heading", id: "community",
    "data-evidence": "community" },
    h("h3", { id: "community-heading" }, "Community evidence ", c ? communityBadge(c.verdict) : null),
    h("p", { class: "hint", text: "From community submissions alone: their own tests and verdict, each " +
      "contributor counted at most a capped number of times per model and day. Never part of the " +
      "model's verdict above." }));
  if (!c && !days.length) {
    section.append(h("p", { class: "empty", id: "community-none",
      text: "No community submissions are counted for this model." }));
    return section;
  }
  if (c) {
    const fact = (term, value) => h("div", {}, h("dt", { text: term }), h("dd", { text: value }));
    section.append(h("dl", { class: "detail-meta", id: "community-facts" },
      fact("Pass rate now", fmtPct(c.pass_rate_recent)),
      fact("Baseline", fmtPct(c.pass_rate_baseline)),
      fact("Rows recent / baseline", `${fmtInt(c.rows_recent)} / ${fmtInt(c.rows_baseline)}`)),
    // Never a null or a 0 here: append would write either as text.
    ...(Array.isArray(c.reasons) && c.reasons.length > 0 && c.verdict !== "stable"
      ? [h("ul", { class: "reasons" }, c.reasons.map((r) => h("li", { text: String(r) })))]
      : []));
  }
  if (days.length) section.append(historyTable(days, "Show community submissions per day as a table"));
  section.append(driftSection(modelId, drift && drift.community_tests, COMMUNITY_DRIFT));
  return section;
}

// Each open bumps the token: a history that arrives after another model was picked is dropped.
let detailToken = 0;

/**
 * Show `modelId` in the detail panel (null hides it), marking its row as selected. With `focus`,
 * focus moves to the panel's heading so a screen reader announces the model.
 */
export async function renderDetail(modelId, summaries, focus) {
  const panel = $("detail");
  const body = $("detail-body");
  const token = ++detailToken;
  for (const btn of document.querySelectorAll(".model-button")) {
    const on = btn.dataset.modelId === modelId;
    btn.setAttribute("aria-expanded", on ? "true" : "false");
    btn.closest("tr").classList.toggle("selected", on);
  }
  if (modelId === null) {
    panel.hidden = true;
    panel.removeAttribute("data-model-id");
    return;
  }
  const summary = sortModels(summaries.models).find((m) => String(m.model_id) === modelId);
  panel.hidden = false;
  panel.dataset.modelId = modelId;
  panel.dataset.state = "loading";
  // (replaceChildren writes a null as the text "null": a model without a summary gets no badge.)
  $("detail-heading").replaceChildren(modelId, ...(summary ? [" ", badge(summary.verdict)] : []));
  const meta = summaryFacts(summary);
  body.replaceChildren(meta, h("p", { class: "empty", text: "Loading history…" }));
  if (focus) {
    $("detail-heading").focus({ preventScroll: true });
    panel.scrollIntoView({ block: "start" });
  }
  // The evidence route is asked only when models.json says evidence was published for the model.
  const hasEvidence = Boolean(summary && typeof summary.evidence_url === "string" && summary.evidence_url);
  const [result, evidence] = await Promise.all([loadHistory(modelId),
    hasEvidence ? loadEvidence(modelId) : Promise.resolve(null)]);
  if (token !== detailToken) return;
  const drift = summaries.drift;
  body.replaceChildren(meta, availabilitySection(summary),
    historySection(modelId, result, recentWindow(summaries), changeMarker(summary)),
    evidenceSection(summary, evidence),
    driftSection(modelId, drift && drift.tests, PROJECT_DRIFT, drift && drift.semantic),
    communitySection(modelId, summary, result, drift));
  panel.dataset.state = "ready";
}
