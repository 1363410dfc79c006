// The top of the page: the freshness facts in the header, the notices (empty state, failed
// requests) and the models table, most worrying first.

import { $, h } from "../dom.js";
import { dateOnly, fmtInt, fmtPct, fmtTime, isNum } from "../format.js";
import { VERDICTS, badge, communityBadge, sortModels, verdictLabel, verdictOf } from "../verdicts.js";
import { availabilityBadge } from "./evidence.js";

function timeEl(iso) {
  const t = fmtTime(iso);
  if (!t) return document.createTextNode("never");
  return h("time", { datetime: t.iso, title: t.rel }, t.text,
    t.rel ? h("span", { class: "sub", text: t.rel }) : null);
}

export function renderHeader(summaries) {
  const { health, chart, models } = summaries;
  const last = (health && health.last_nightly) || (models && models.generated_at);
  $("last-nightly").replaceChildren(timeEl(last));
  $("total-submissions").textContent = fmtInt(chart ? chart.total_submissions : null);
  const w = models && models.window;
  const asOf = w && w.as_of ? `, as of ${String(w.as_of).slice(0, 10)}` : "";
  $("window").textContent = w ? `last ${w.recent_days} days vs previous ${w.baseline_days}${asOf}` : "—";
}

export function renderNotices(summaries) {
  const { chart, nightlyMissing, failures } = summaries;
  const box = $("status");
  box.replaceChildren();
  if (nightlyMissing) {
    box.append(h("div", { class: "notice", id: "empty-state" },
      h("p", {}, h("strong", { text: "No nightly run yet" }), " — run ",
        h("code", { text: "plumbline nightly" }), " to aggregate the stored results and compute drift."),
      (chart && chart.total_submissions)
        ? null
        : h("p", {}, "No results are stored either: run a suite first (for example ",
          h("code", { text: "plumbline demo" }), ")."),
    ));
  }
  if (failures.length) {
    box.append(h("div", { class: "notice error", id: "load-errors" },
      h("p", {}, h("strong", { text: "Some data could not be loaded." })),
      failures.map((f) => {
        const what = f.status ? `HTTP ${f.status}` : f.error || "network error";
        return h("p", {}, h("code", { text: f.url }), ` — ${what}${f.detail ? `: ${f.detail}` : ""}`);
      }),
    ));
  }
}

function suiteNames(suites) {
  if (Array.isArray(suites)) {
    return suites.map((x) => (x && typeof x === "object" ? x.suite || x.name : x))
      .filter(Boolean).map(String);
  }
  if (suites && typeof suites === "object") return Object.keys(suites);
  return [];
}

function passDelta(recent, baseline) {
  if (!isNum(recent) || !isNum(baseline)) return null;
  const pp = (recent - baseline) * (recent > 1 || baseline > 1 ? 1 : 100);
  if (Math.abs(pp) < 0.05) return h("span", { class: "delta", text: "±0.0 pp" });
  // A move of under 2 points is within day-to-day noise for suites of this size: not coloured.
  const dir = Math.abs(pp) < 2 ? "" : pp < 0 ? "down" : "up";
  return h("span", { class: `delta ${dir}`, title: "change in percentage points",
    text: `${pp < 0 ? "▼" : "▲"} ${Math.abs(pp).toFixed(1)} pp` });
}

// The community's verdict of a model, as the cell's contents (a list of nodes).
function communityCell(c) {
  if (!c || typeof c !== "object") {
    return [h("span", { title: "No community submissions counted for this model", text: "—" })];
  }
  return [communityBadge(c.verdict),
    h("span", { class: "sub", text: `${fmtInt(c.rows_recent)} / ${fmtInt(c.rows_baseline)} rows` })];
}

/** The models table; `onSelect(modelId)` runs when a model's button is pressed. */
export function renderModels(summaries, onSelect) {
  const host = $("models");
  const models = sortModels(summaries.models);
  const counts = {};
  for (const m of models) counts[verdictOf(m.verdict)] = (counts[verdictOf(m.verdict)] || 0) + 1;
  $("verdict-counts").textContent = Object.keys(VERDICTS).concat("unknown")
    .filter((k) => counts[k])
    .map((k) => `${counts[k]} ${verdictLabel(k).toLowerCase()}`)
    .join(" · ");

  if (!models.length) {
    host.replaceChildren(h("p", { class: "empty", id: "models-empty",
      text: summaries.nightlyMissing
        ? "No model summaries yet: they appear after the first nightly run."
        : "The latest nightly run summarized no models." }));
    return;
  }

  // Each cell's content sits in one wrapper, so narrow screens can lay a row out as a card.
  const cell = (attrs, ...content) => h("td", attrs, h("div", { class: "cell" }, content));
  const rows = models.map((m) => {
    const id = String(m.model_id);
    const suites = suiteNames(m.suites);
    return h("tr", { class: `verdict-${verdictOf(m.verdict)}`, "data-model-id": id },
      cell({ "data-label": "Model" },
        h("button", { type: "button", class: "model-button", "aria-controls": "detail",
          "aria-expanded": "false", "data-model-id": id, onclick: () => onSelect(id), text: id }),
        suites.length ? h("span", { class: "sub", text: suites.join(", ") }) : null),
      // An outage shows beside the verdict, in its own words: it is not a quality verdict.
      cell({ "data-label": "Verdict" }, badge(m.verdict),
        m.availability && m.availability.status === "degraded"
          ? h("span", { class: "sub" }, availabilityBadge("degraded")) : null),
      cell({ class: "num", "data-label": "Pass rate now" },
        fmtPct(m.pass_rate_recent), passDelta(m.pass_rate_recent, m.pass_rate_baseline)),
      cell({ class: "num", "data-label": "Baseline" }, fmtPct(m.pass_rate_baseline)),
      cell({ class: "num", "data-label": "Consistency" }, fmtPct(m.consistency),
        m.consistency_band ? h("span", { class: "sub", text: String(m.consistency_band) }) : null),
      cell({ class: "num", "data-label": "Rows (recent / baseline)" },
        `${fmtInt(m.rows_recent)} / ${fmtInt(m.rows_baseline)}`),
      cell({ class: "date", "data-label": "Last seen" }, dateOnly(m.last_seen)),
      cell({ class: "community", "data-label": "Community" }, ...communityCell(m.community)),
    );
  });

  const w = summaries.models.window || {};
  const columns = [["Model"], ["Verdict"], ["Pass rate now", "num"], ["Baseline", "num"],
    ["Consistency", "num"], ["Rows (recent / baseline)", "num"], ["Last seen"], ["Community"]];
  host.replaceChildren(h("div", { class: "table-scroll" },
    h("table", { class: "models-table", id: "models-table" },
      h("caption", { text: `Most worrying first. Pass rate over the last ${w.recent_days ?? "?"} days ` +
        `against the ${w.baseline_days ?? "?"} days before; consistency is the share of prompts ` +
        "whose outputs did not change. Verdicts and figures come from the project's own runs; " +
        "community submissions have their own verdict (Community), never mixed in." }),
      h("thead", {}, h("tr", {}, columns.map(([text, cls]) => h("th", { scope: "col", class: cls, text })))),
      h("tbody", {}, rows))));
}
