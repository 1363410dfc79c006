// The dashboard's only network access: the read API's JSON summaries, from this page's own
// origin. A failed request is a value ({ok: false, status, …}) the page reports, never a throw.
// Caching is left to the browser: the API sends ETags and the browser revalidates with them.

export async function getJSON(url) {
  try {
    const resp = await fetch(url, { headers: { Accept: "application/json" } });
    if (!resp.ok) {
      // Error bodies explain themselves (FastAPI's `detail`, /api/health's `storage`).
      let detail = "";
      try {
        const body = await resp.json();
        detail = String((body && (body.detail || (body.storage !== "ok" && body.storage))) || "");
      } catch { /* not JSON: the status says enough */ }
      return { ok: false, status: resp.status, url, detail: detail.slice(0, 300) };
    }
    return { ok: true, status: resp.status, url, data: await resp.json() };
  } catch (err) {
    return { ok: false, status: 0, url, error: String(err) };
  }
}

/** What the page shows before any model is opened: the four materialized summaries. */
export async function loadSummaries() {
  const [health, chart, models, drift] = await Promise.all([
    getJSON("/api/health"), getJSON("/api/data/chart"), getJSON("/api/models"), getJSON("/api/drift"),
  ]);
  const modelsPayload = models.ok && models.data && Array.isArray(models.data.models) ? models.data : null;
  return {
    health: health.ok ? health.data : null,
    chart: chart.ok ? chart.data : null,
    models: modelsPayload,
    drift: drift.ok ? drift.data : null,
    // A 404 means the nightly flow has not materialized the file yet: that is the empty state,
    // not an error. /api/health answers 503 with a body when storage is down, so it is reported.
    nightlyMissing: !modelsPayload || modelsPayload.models.length === 0,
    failures: [health, chart, models, drift].filter((r) => !r.ok && r.status !== 404),
  };
}

/** One model's daily history (fetched when the model is opened). */
export function loadHistory(modelId) {
  // The model id keeps its '/' (the API routes it as a path parameter); each part is escaped.
  return getJSON(`/api/models/${modelId.split("/").map(encodeURIComponent).join("/")}/history`);
}

/** One model's before/after evidence (published only for models on watch or drifting). */
export function loadEvidence(modelId) {
  return getJSON(`/api/models/${modelId.split("/").map(encodeURIComponent).join("/")}/evidence`);
}
