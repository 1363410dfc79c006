// A model's verdict: its label, how worrying it is (the order of the table and the charts), and
// its badge (always a word as well as a colour). A model's verdict comes from the project's own
// runs; the community's verdict is a separate badge that always says "Community".

import { h } from "./dom.js";

export const VERDICTS = {
  drifting: { label: "Drifting", rank: 0 },
  watch: { label: "Watch", rank: 1 },
  stable: { label: "Stable", rank: 2 },
  insufficient_data: { label: "Insufficient data", rank: 3 },
};

export function verdictOf(v) { return VERDICTS[v] ? v : "unknown"; }

export function verdictLabel(key) { return VERDICTS[key] ? VERDICTS[key].label : "Unknown"; }

export function badge(verdict) {
  const key = verdictOf(verdict);
  return h("span", { class: `badge badge-${key}`, "data-verdict": key, text: verdictLabel(key) });
}

/** The community's own verdict, labelled so it is never read as the model's verdict. */
export function communityBadge(verdict) {
  return h("span", { class: "evidence evidence-community", "data-evidence": "community" },
    h("span", { class: "evidence-label", text: "Community" }), " ", badge(verdict));
}

/** The model rows of `/api/models`, most worrying first, then by id. */
export function sortModels(modelsPayload) {
  const list = modelsPayload && Array.isArray(modelsPayload.models) ? modelsPayload.models.slice() : [];
  const rank = (m) => (VERDICTS[m.verdict] ? VERDICTS[m.verdict].rank : 9);
  return list.sort((a, b) => rank(a) - rank(b) || String(a.model_id).localeCompare(String(b.model_id)));
}
