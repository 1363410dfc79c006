// Plumbline dashboard, entry point: loads the materialized summaries, draws the overview (models,
// compare, submissions), and routes between the overview and a model's view. The selected model
// lives in the URL (#model=<id>), so a view can be linked and Back works.

import { loadSummaries } from "./api.js";
import { $ } from "./dom.js";
import { renderCompare } from "./views/compare.js";
import { renderDetail } from "./views/model.js";
import { renderHeader, renderModels, renderNotices } from "./views/overview.js";
import { renderSubmissions } from "./views/submissions.js";

function selectedFromHash() {
  const m = /^#model=(.+)$/.exec(location.hash);
  if (!m) return null;
  try { return decodeURIComponent(m[1]); } catch { return null; }
}

async function start() {
  const summaries = await loadSummaries();
  const show = (id, focus) => renderDetail(id, summaries, focus);

  // Picking the model already in the URL fires no hashchange, so it is shown directly.
  function selectModel(id) {
    if (selectedFromHash() === id) show(id, true);
    else location.hash = `model=${encodeURIComponent(id)}`;
  }

  function closeDetail() {
    const id = selectedFromHash();
    history.pushState(null, "", location.pathname + location.search);
    show(null, false);
    if (id) {
      const btn = [...document.querySelectorAll(".model-button")].find((b) => b.dataset.modelId === id);
      if (btn) btn.focus();
    }
  }

  renderHeader(summaries);
  renderNotices(summaries);
  renderModels(summaries, selectModel);
  renderCompare(summaries);
  renderSubmissions(summaries);

  $("detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !$("detail").hidden) closeDetail();
  });
  window.addEventListener("hashchange", () => show(selectedFromHash(), true));
  $("main").setAttribute("aria-busy", "false");
  document.body.dataset.state = "ready";
  const initial = selectedFromHash();
  if (initial !== null) await show(initial, true);
}

// Module scripts run once the document is parsed, so the page's elements exist already.
start();
