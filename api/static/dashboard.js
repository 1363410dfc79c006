// Plumbline dashboard: reads the materialized summaries from the read API (same origin) and draws
// them with plain DOM and SVG. No framework, no build step, no network beyond this origin.
// Every value from the API is inserted as text (never as markup): model ids come from community
// submissions.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const DAY_MS = 86400000;
  // The per-model submission charts show at most this many recent days, so bars stay legible.
  const CHART_DAYS = 90;

  const VERDICTS = {
    drifting: { label: "Drifting", rank: 0 },
    watch: { label: "Watch", rank: 1 },
    stable: { label: "Stable", rank: 2 },
    insufficient_data: { label: "Insufficient data", rank: 3 },
  };

  const state = { health: null, chart: null, models: null, drift: null, nightlyMissing: false };

  // ---------------------------------------------------------------- DOM helpers

  function build(ns, tag, attrs, children) {
    const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") el.textContent = String(value);
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }
  const h = (tag, attrs, ...children) => build(null, tag, attrs, children);
  const s = (tag, attrs, ...children) => build(SVG_NS, tag, attrs, children);

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- formatting

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const intFmt = new Intl.NumberFormat("en-US");

  function fmtInt(v) { return isNum(v) ? intFmt.format(Math.round(v)) : "—"; }

  // Rates and consistency are fractions in [0, 1]; a value above 1 is taken as already a percentage.
  function fmtPct(v, digits = 1) {
    if (!isNum(v)) return "—";
    const pct = v > 1 ? v : v * 100;
    return `${pct.toFixed(digits)}%`;
  }

  function fmtMs(v) {
    if (!isNum(v)) return "—";
    return v >= 10000 ? `${(v / 1000).toFixed(1)} s` : `${intFmt.format(Math.round(v))} ms`;
  }

  function fmtNum(v) {
    if (!isNum(v)) return "—";
    if (v !== 0 && (Math.abs(v) < 0.001 || Math.abs(v) >= 1e6)) return v.toExponential(2);
    return String(Number(v.toPrecision(3)));
  }

  function fmtP(v) {
    if (!isNum(v)) return "—";
    return v < 0.0001 ? "< 0.0001" : v.toFixed(4);
  }

  // Operators schedule in UTC, so times are shown in UTC, with a relative hint.
  function fmtTime(iso) {
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

  function timeEl(iso) {
    const t = fmtTime(iso);
    if (!t) return document.createTextNode("never");
    return h("time", { datetime: t.iso, title: t.rel }, t.text, t.rel ? h("span", { class: "sub", text: t.rel }) : null);
  }

  function dayNum(isoDate) {
    const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(String(isoDate || ""));
    return m ? Math.round(Date.UTC(+m[1], +m[2] - 1, +m[3]) / DAY_MS) : null;
  }
  function dayStr(n) { return new Date(n * DAY_MS).toISOString().slice(0, 10); }

  function verdictOf(v) { return VERDICTS[v] ? v : "unknown"; }
  function badge(verdict) {
    const key = verdictOf(verdict);
    const label = VERDICTS[key] ? VERDICTS[key].label : "Unknown";
    return h("span", { class: `badge badge-${key}`, "data-verdict": key, text: label });
  }

  function suiteNames(suites) {
    if (Array.isArray(suites)) {
      return suites.map((x) => (x && typeof x === "object" ? x.suite || x.name : x)).filter(Boolean).map(String);
    }
    if (suites && typeof suites === "object") return Object.keys(suites);
    return [];
  }

  // ---------------------------------------------------------------- data

  async function getJSON(url) {
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

  function historyUrl(modelId) {
    // The model id keeps its '/' (the API routes it as a path parameter); each part is escaped.
    return `/api/models/${modelId.split("/").map(encodeURIComponent).join("/")}/history`;
  }

  // ---------------------------------------------------------------- header and notices

  function renderHeader() {
    const last = (state.health && state.health.last_nightly) || (state.models && state.models.generated_at);
    $("last-nightly").replaceChildren(timeEl(last));
    const total = state.chart ? state.chart.total_submissions : null;
    $("total-submissions").textContent = fmtInt(total);
    const w = state.models && state.models.window;
    $("window").textContent = w
      ? `last ${w.recent_days} days vs previous ${w.baseline_days}${w.as_of ? `, as of ${String(w.as_of).slice(0, 10)}` : ""}`
      : "—";
  }

  function renderNotices(failures) {
    const box = $("status");
    box.replaceChildren();
    if (state.nightlyMissing) {
      box.append(h("div", { class: "notice", id: "empty-state" },
        h("p", {}, h("strong", { text: "No nightly run yet" }), " — run ", h("code", { text: "plumbline nightly" }),
          " to aggregate the stored results and compute drift."),
        (state.chart && state.chart.total_submissions)
          ? null
          : h("p", {}, "No results are stored either: run a suite first (for example ",
            h("code", { text: "plumbline demo" }), ")."),
      ));
    }
    if (failures.length) {
      box.append(h("div", { class: "notice error", id: "load-errors" },
        h("p", {}, h("strong", { text: "Some data could not be loaded." })),
        failures.map((f) => h("p", {}, h("code", { text: f.url }),
          ` — ${f.status ? `HTTP ${f.status}` : f.error || "network error"}${f.detail ? `: ${f.detail}` : ""}`)),
      ));
    }
  }

  // ---------------------------------------------------------------- models table

  function sortedModels() {
    const list = (state.models && Array.isArray(state.models.models)) ? state.models.models.slice() : [];
    const rank = (m) => (VERDICTS[m.verdict] ? VERDICTS[m.verdict].rank : 9);
    return list.sort((a, b) => rank(a) - rank(b) || String(a.model_id).localeCompare(String(b.model_id)));
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

  function renderModels() {
    const host = $("models");
    const models = sortedModels();
    const counts = {};
    for (const m of models) counts[verdictOf(m.verdict)] = (counts[verdictOf(m.verdict)] || 0) + 1;
    $("verdict-counts").textContent = Object.keys(VERDICTS).concat("unknown")
      .filter((k) => counts[k])
      .map((k) => `${counts[k]} ${(VERDICTS[k] ? VERDICTS[k].label : "unknown").toLowerCase()}`)
      .join(" · ");

    if (!models.length) {
      host.replaceChildren(h("p", { class: "empty", id: "models-empty",
        text: state.nightlyMissing
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
          h("button", { type: "button", class: "model-button", "aria-controls": "detail", "aria-expanded": "false",
            "data-model-id": id, onclick: () => selectModel(id), text: id }),
          suites.length ? h("span", { class: "sub", text: suites.join(", ") }) : null),
        cell({ "data-label": "Verdict" }, badge(m.verdict)),
        cell({ class: "num", "data-label": "Pass rate now" },
          fmtPct(m.pass_rate_recent), passDelta(m.pass_rate_recent, m.pass_rate_baseline)),
        cell({ class: "num", "data-label": "Baseline" }, fmtPct(m.pass_rate_baseline)),
        cell({ class: "num", "data-label": "Consistency" }, fmtPct(m.consistency),
          m.consistency_band ? h("span", { class: "sub", text: String(m.consistency_band) }) : null),
        cell({ class: "num", "data-label": "Rows (recent / baseline)" },
          `${fmtInt(m.rows_recent)} / ${fmtInt(m.rows_baseline)}`),
        cell({ class: "date", "data-label": "Last seen" }, m.last_seen ? String(m.last_seen).slice(0, 10) : "—"),
      );
    });

    const w = state.models.window || {};
    host.replaceChildren(h("div", { class: "table-scroll" },
      h("table", { class: "models-table", id: "models-table" },
        h("caption", { text: `Most worrying first. Pass rate over the last ${w.recent_days ?? "?"} days against the ${w.baseline_days ?? "?"} days before; consistency is the share of prompts whose outputs did not change.` }),
        h("thead", {}, h("tr", {},
          h("th", { scope: "col", text: "Model" }),
          h("th", { scope: "col", text: "Verdict" }),
          h("th", { scope: "col", class: "num", text: "Pass rate now" }),
          h("th", { scope: "col", class: "num", text: "Baseline" }),
          h("th", { scope: "col", class: "num", text: "Consistency" }),
          h("th", { scope: "col", class: "num", text: "Rows (recent / baseline)" }),
          h("th", { scope: "col", text: "Last seen" }))),
        h("tbody", {}, rows))));
  }

  // ---------------------------------------------------------------- charts

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const f of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (f * p >= v) return f * p;
    return 10 * p;
  }

  // One small bar chart: one bar per day (missing days are zero), for one model.
  function barChart(modelId, days, counts) {
    const W = 300, H = 120, L = 34, R = 6, T = 8, B = 20;
    const n = days.length;
    const max = niceMax(Math.max(0, ...counts));
    const bw = (W - L - R) / Math.max(n, 1);
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const total = counts.reduce((a, b) => a + b, 0);
    let peak = 0;
    counts.forEach((c, i) => { if (c > counts[peak]) peak = i; });
    const label = `${modelId}: ${fmtInt(total)} submissions over ${n} days` +
      (n ? `, from ${days[0]} to ${days[n - 1]}, at most ${fmtInt(counts[peak])} on ${days[peak]}` : "");
    const bars = counts.map((c, i) => c > 0
      ? s("rect", { class: "bar", x: (L + i * bw + bw * 0.12).toFixed(2), y: y(c).toFixed(2),
        width: Math.max(bw * 0.76, 0.8).toFixed(2), height: (H - B - y(c)).toFixed(2) },
        s("title", { text: `${days[i]}: ${fmtInt(c)} submissions` }))
      : null);
    return s("svg", { class: "chart submissions-chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label,
      "data-model-id": modelId, preserveAspectRatio: "xMidYMid meet" },
      s("line", { class: "grid", x1: L, x2: W - R, y1: y(max), y2: y(max) }),
      s("line", { class: "grid", x1: L, x2: W - R, y1: y(max / 2), y2: y(max / 2) }),
      s("text", { x: L - 4, y: y(max) + 3, "text-anchor": "end", text: fmtInt(max) }),
      s("text", { x: L - 4, y: y(max / 2) + 3, "text-anchor": "end", text: fmtInt(max / 2) }),
      s("text", { x: L - 4, y: y(0) + 3, "text-anchor": "end", text: "0" }),
      bars,
      s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }),
      n ? s("text", { x: L, y: H - 5, text: days[0] }) : null,
      n > 1 ? s("text", { x: W - R, y: H - 5, "text-anchor": "end", text: days[n - 1] }) : null);
  }

  function renderChart() {
    const host = $("chart");
    const chart = state.chart || {};
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
    const verdicts = new Map(sortedModels().map((m, i) => [String(m.model_id), i]));
    const ordered = models.slice().sort((a, b) =>
      (verdicts.has(a) ? verdicts.get(a) : 1e9) - (verdicts.has(b) ? verdicts.get(b) : 1e9) || a.localeCompare(b));

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

    const note = allDays[0] < first ? h("p", { class: "hint", text: `Showing the last ${CHART_DAYS} days; totals cover all data.` }) : null;
    host.replaceChildren(note || "", h("div", { class: "multiples" }, figures), table);
  }

  // A line chart over dates; null values break the line. `opts.window` shades the recent window.
  function lineChart(points, opts) {
    const W = 520, H = 190, L = 50, R = 10, T = 10, B = 24;
    const pts = points.filter((p) => p.day !== null).sort((a, b) => a.day - b.day);
    const vals = pts.map((p) => p.value).filter(isNum);
    const x0 = pts.length ? pts[0].day : 0;
    const x1 = pts.length ? pts[pts.length - 1].day : 1;
    const span = Math.max(x1 - x0, 1);
    const yMax = opts.yMax ?? niceMax(Math.max(0, ...vals));
    const x = (d) => L + (W - L - R) * (pts.length === 1 ? 0.5 : (d - x0) / span);
    const y = (v) => T + (H - T - B) * (1 - v / yMax);

    let path = "";
    let pen = false;
    for (const p of pts) {
      if (!isNum(p.value)) { pen = false; continue; }
      path += `${pen ? "L" : "M"}${x(p.day).toFixed(1)},${y(p.value).toFixed(1)}`;
      pen = true;
    }
    const win = opts.window;
    let shade = null;
    if (win && pts.length) {
      const a = Math.max(win.start, x0), b = Math.min(win.end, x1);
      if (b >= a) {
        const xa = pts.length === 1 ? L : x(a) - (a === x0 ? 0 : 0.5 * (W - L - R) / span);
        shade = s("rect", { class: "window", x: xa.toFixed(1), y: T, width: Math.max(x(b) - xa, 2).toFixed(1),
          height: H - T - B }, s("title", { text: "recent window" }));
      }
    }
    const ticks = [0, yMax / 2, yMax];
    const fmt = opts.format;
    return s("svg", { class: `chart line-chart ${opts.cls || ""}`, viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": opts.label, preserveAspectRatio: "xMidYMid meet" },
      shade,
      ticks.map((t) => s("line", { class: "grid", x1: L, x2: W - R, y1: y(t), y2: y(t) })),
      ticks.map((t) => s("text", { x: L - 5, y: y(t) + 3, "text-anchor": "end", text: fmt(t) })),
      s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }),
      path ? s("path", { class: `line ${opts.lineCls}`, d: path }) : null,
      pts.filter((p) => isNum(p.value)).map((p) => s("circle", { class: opts.dotCls, cx: x(p.day).toFixed(1),
        cy: y(p.value).toFixed(1), r: pts.length > 60 ? 1.5 : 2.5 }, s("title", { text: `${dayStr(p.day)}: ${fmt(p.value)}` }))),
      pts.length ? s("text", { x: L, y: H - 7, text: dayStr(x0) }) : null,
      pts.length > 1 ? s("text", { x: W - R, y: H - 7, "text-anchor": "end", text: dayStr(x1) }) : null);
  }

  // ---------------------------------------------------------------- model detail

  function recentWindow() {
    const w = state.models && state.models.window;
    const end = w ? dayNum(w.as_of) : null;
    if (end === null || !isNum(w.recent_days)) return null;
    return { start: end - w.recent_days + 1, end };
  }

  const METRIC_NAMES = {
    pass_rate: "Pass rate", score: "Score", score_mean: "Score", latency_ms: "Latency",
    latency: "Latency", output_len: "Output length", output_length: "Output length",
    consistency: "Consistency", error_rate: "Error rate", cost_usd: "Cost",
  };
  const TEST_NAMES = {
    fisher_exact: "Fisher's exact", fisher: "Fisher's exact", chi_square: "χ²", chi2: "χ²",
    mann_whitney_u: "Mann–Whitney U", mannwhitneyu: "Mann–Whitney U", mann_whitney: "Mann–Whitney U",
    consistency: "Output consistency",
  };
  const nameOf = (names, key) => (key === null || key === undefined ? "—" : names[key] || String(key));

  function metricFormatter(metric) {
    const m = String(metric || "");
    if (/pass|rate|consisten/.test(m)) return fmtPct;
    if (/latency|_ms$/.test(m)) return fmtMs;
    return fmtNum;
  }

  function driftSection(modelId) {
    const section = h("section", { "aria-labelledby": "drift-heading", id: "drift-tests" },
      h("h3", { id: "drift-heading", text: "Significant drift tests" }));
    if (!state.drift || !Array.isArray(state.drift.tests)) {
      section.append(h("p", { class: "empty", text: "No drift report yet (it is written by the nightly run)." }));
      return section;
    }
    const mine = state.drift.tests.filter((t) => t.model_id === modelId);
    const sig = mine.filter((t) => t.significant === true)
      .sort((a, b) => (a.p_adjusted ?? 1) - (b.p_adjusted ?? 1));
    if (!sig.length) {
      section.append(h("p", { class: "empty", id: "drift-none",
        text: `None: ${mine.length} test${mine.length === 1 ? "" : "s"} run for this model, none significant after Benjamini–Hochberg correction.` }));
      return section;
    }
    section.append(h("div", { class: "table-scroll" }, h("table", { class: "drift-table" },
      h("caption", { text: `${sig.length} of ${mine.length} tests significant after Benjamini–Hochberg correction, strongest evidence first.` }),
      h("thead", {}, h("tr", {}, ["Suite", "Prompt", "Metric", "Test", "Recent", "Baseline", "Effect", "p (adjusted)", "n (recent / baseline)"]
        .map((t, i) => h("th", { scope: "col", class: i >= 4 ? "num" : null, text: t })))),
      h("tbody", {}, sig.map((t) => {
        const f = metricFormatter(t.metric);
        return h("tr", { class: "drift-row", "data-metric": t.metric },
          h("td", { text: t.suite || "all suites" }),
          h("td", { text: t.prompt_id || "all prompts" }),
          h("td", { text: nameOf(METRIC_NAMES, t.metric), title: t.metric ?? null }),
          h("td", { text: nameOf(TEST_NAMES, t.test), title: t.test ?? null }),
          h("td", { class: "num", text: f(t.recent_value) }),
          h("td", { class: "num", text: f(t.baseline_value) }),
          h("td", { class: "num" }, isNum(t.effect_size) ? fmtNum(t.effect_size) : "—",
            t.effect_measure ? h("span", { class: "sub", text: String(t.effect_measure).replaceAll("_", " ") }) : null),
          h("td", { class: "num", text: fmtP(t.p_adjusted) }),
          h("td", { class: "num", text: `${fmtInt(t.n_recent)} / ${fmtInt(t.n_baseline)}` }));
      })))));
    return section;
  }

  function historySection(modelId, result) {
    const section = h("section", { "aria-labelledby": "history-heading", id: "history" },
      h("h3", { id: "history-heading", text: "History" }));
    const days = result.ok && result.data && Array.isArray(result.data.days) ? result.data.days : [];
    if (!days.length) {
      section.append(h("p", { class: "empty", id: "history-empty",
        text: result.ok || result.status === 404
          ? "No daily history for this model yet."
          : `Could not load the history (${result.status ? `HTTP ${result.status}` : "network error"}).` }));
      return section;
    }
    const win = recentWindow();
    const pass = days.map((d) => ({ day: dayNum(d.date), value: isNum(d.pass_rate) ? d.pass_rate : null }));
    const lat = days.map((d) => ({ day: dayNum(d.date), value: isNum(d.latency_p50_ms) ? d.latency_p50_ms : null }));
    const passVals = pass.map((p) => p.value).filter(isNum);
    const latVals = lat.map((p) => p.value).filter(isNum);
    const passLabel = `Pass rate per day for ${modelId}, ${days.length} days` +
      (passVals.length ? `, latest ${fmtPct(passVals[passVals.length - 1])}` : "");
    const latLabel = `Median latency per day for ${modelId}` +
      (latVals.length ? `, latest ${fmtMs(latVals[latVals.length - 1])}` : "");
    section.append(
      win ? h("p", { class: "hint", text: "The shaded band is the recent window the drift tests compare with the baseline." }) : null,
      h("div", { class: "chart-grid" },
        h("figure", {}, h("figcaption", {}, h("span", { class: "name", text: "Pass rate" })),
          lineChart(pass, { yMax: passVals.some((v) => v > 1) ? 100 : 1, format: (v) => fmtPct(v, 0),
            label: passLabel, lineCls: "line-a", dotCls: "dot-a", cls: "pass-rate-chart", window: win })),
        h("figure", {}, h("figcaption", {}, h("span", { class: "name", text: "Latency p50" })),
          lineChart(lat, { format: fmtMs, label: latLabel, lineCls: "line-b", dotCls: "dot-b",
            cls: "latency-chart", window: win }))),
      h("details", { class: "data-table" }, h("summary", { text: "Show daily history as a table" }),
        h("div", { class: "table-scroll" }, h("table", {},
          h("thead", {}, h("tr", {}, ["Date", "Rows", "Pass rate", "Score", "Latency p50", "Latency p95",
            "Distinct outputs", "Cost (USD)", "Consistency"].map((t, i) => h("th", { scope: "col", class: i ? "num" : null, text: t })))),
          h("tbody", {}, days.slice().reverse().map((d) => h("tr", {},
            h("th", { scope: "row", text: String(d.date) }),
            h("td", { class: "num", text: fmtInt(d.rows) }),
            h("td", { class: "num", text: fmtPct(d.pass_rate) }),
            h("td", { class: "num", text: fmtNum(d.score_mean) }),
            h("td", { class: "num", text: fmtMs(d.latency_p50_ms) }),
            h("td", { class: "num", text: fmtMs(d.latency_p95_ms) }),
            h("td", { class: "num", text: fmtInt(d.distinct_outputs) }),
            h("td", { class: "num", text: isNum(d.cost_usd) ? d.cost_usd.toFixed(4) : "—" }),
            h("td", { class: "num", text: fmtPct(d.consistency) }))))))));
    return section;
  }

  let detailToken = 0;

  async function renderDetail(modelId, focus) {
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
    const summary = sortedModels().find((m) => String(m.model_id) === modelId);
    panel.hidden = false;
    panel.dataset.modelId = modelId;
    panel.dataset.state = "loading";
    $("detail-heading").replaceChildren(modelId, " ", summary ? badge(summary.verdict) : null);
    const meta = summary
      ? h("dl", { class: "detail-meta" },
        h("div", {}, h("dt", { text: "Pass rate now" }), h("dd", { text: fmtPct(summary.pass_rate_recent) })),
        h("div", {}, h("dt", { text: "Baseline" }), h("dd", { text: fmtPct(summary.pass_rate_baseline) })),
        h("div", {}, h("dt", { text: "Consistency" }), h("dd", { text: `${fmtPct(summary.consistency)}${summary.consistency_band ? ` (${summary.consistency_band})` : ""}` })),
        h("div", {}, h("dt", { text: "Rows recent / baseline" }), h("dd", { text: `${fmtInt(summary.rows_recent)} / ${fmtInt(summary.rows_baseline)}` })),
        h("div", {}, h("dt", { text: "Last seen" }), h("dd", { text: summary.last_seen ? String(summary.last_seen).slice(0, 10) : "—" })))
      : h("p", { class: "empty", text: "This model is not in the latest nightly summary." });
    body.replaceChildren(meta, h("p", { class: "empty", text: "Loading history…" }));
    if (focus) {
      $("detail-heading").focus({ preventScroll: true });
      panel.scrollIntoView({ block: "start" });
    }
    const result = await getJSON(historyUrl(modelId));
    if (token !== detailToken) return; // another model was picked meanwhile
    body.replaceChildren(meta, historySection(modelId, result), driftSection(modelId));
    panel.dataset.state = "ready";
  }

  // The selected model lives in the URL (#model=<id>), so a view can be linked and Back works.
  function selectedFromHash() {
    const m = /^#model=(.+)$/.exec(location.hash);
    if (!m) return null;
    try { return decodeURIComponent(m[1]); } catch { return null; }
  }

  function selectModel(id) {
    if (selectedFromHash() === id) renderDetail(id, true);
    else location.hash = `model=${encodeURIComponent(id)}`;
  }

  function closeDetail() {
    const id = selectedFromHash();
    history.pushState(null, "", location.pathname + location.search);
    renderDetail(null, false);
    if (id) {
      const btn = [...document.querySelectorAll(".model-button")].find((b) => b.dataset.modelId === id);
      if (btn) btn.focus();
    }
  }

  // ---------------------------------------------------------------- start

  async function start() {
    const [health, chart, models, drift] = await Promise.all([
      getJSON("/api/health"), getJSON("/api/data/chart"), getJSON("/api/models"), getJSON("/api/drift"),
    ]);
    state.health = health.ok ? health.data : null;
    state.chart = chart.ok ? chart.data : null;
    state.models = models.ok && models.data && Array.isArray(models.data.models) ? models.data : null;
    state.drift = drift.ok ? drift.data : null;
    // A 404 means the nightly flow has not materialized the file yet: that is the empty state,
    // not an error. /api/health answers 503 with a body when storage is down, so it is reported.
    state.nightlyMissing = !state.models || state.models.models.length === 0;
    const failures = [health, chart, models, drift].filter((r) => !r.ok && r.status !== 404);

    renderHeader();
    renderNotices(failures);
    renderModels();
    renderChart();

    $("detail-close").addEventListener("click", closeDetail);
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && !$("detail").hidden) closeDetail();
    });
    window.addEventListener("hashchange", () => renderDetail(selectedFromHash(), true));
    $("main").setAttribute("aria-busy", "false");
    document.body.dataset.state = "ready";
    const initial = selectedFromHash();
    if (initial !== null) await renderDetail(initial, true);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
