// Two parts of a model's view that answer "what changed, and is it just down?": the before/after
// panel (per prompt, the most common answer of the baseline and of the recent window, and a word
// diff between them) and the availability box (failed calls, apart from the quality verdict).
// Answers and error messages are model output or provider text: untrusted, always set as text.

import { h } from "../dom.js";
import { METRIC_NAMES, dateOnly, fmtInt, fmtMs, fmtNum, fmtP, fmtPct, isNum } from "../format.js";

// A long answer is cut for display (the evidence file bounds it too): the page stays readable.
const MAX_OUTPUT_CHARS = 4000;
const MAX_DIFF_CHARS = 8000;

const AVAILABILITY = {
  ok: { label: "Available", cls: "ok" },
  degraded: { label: "Degraded", cls: "degraded" },
  insufficient_data: { label: "Insufficient data", cls: "unknown" },
};

function cut(text, max) {
  const s = String(text ?? "");
  return s.length > max ? { text: s.slice(0, max), cut: s.length - max } : { text: s, cut: 0 };
}

/** The availability badge: a word and a colour of its own, never a verdict's. */
export function availabilityBadge(status) {
  const a = AVAILABILITY[status] || { label: "Unknown", cls: "unknown" };
  return h("span", { class: `avail avail-${a.cls}`, "data-availability": status || "unknown",
    text: a.label });
}

/** models.json's `availability` of a model: status, error rates and the most common error. */
export function availabilitySection(summary) {
  const a = summary && summary.availability && typeof summary.availability === "object"
    ? summary.availability : null;
  const section = h("section", { "aria-labelledby": "availability-heading", id: "availability" },
    h("h3", { id: "availability-heading" }, "Availability ", a ? availabilityBadge(a.status) : null),
    h("p", { class: "hint", text: "Failed calls (errors, timeouts) are not evidence about answer " +
      "quality: they are tested on their own and never change the verdict above." }));
  if (!a) {
    section.append(h("p", { class: "empty", id: "availability-none",
      text: "No availability data: the nightly run that wrote this summary did not report it." }));
    return section;
  }
  const fact = (term, value) => h("div", {}, h("dt", { text: term }), h("dd", { text: value }));
  section.append(h("dl", { class: "detail-meta", id: "availability-facts" },
    fact("Error rate now", fmtPct(a.error_rate_recent)),
    fact("Baseline", fmtPct(a.error_rate_baseline))));
  if (a.top_error) {
    section.append(h("p", { class: "top-error" }, h("span", { class: "term", text: "Most common error: " }),
      h("code", { id: "top-error", text: cut(a.top_error, 300).text })));
  }
  if (Array.isArray(a.reasons) && a.reasons.length) {
    section.append(h("ul", { class: "reasons" }, a.reasons.map((r) => h("li", { text: String(r) }))));
  }
  return section;
}

function answerBlock(kind, answer) {
  const a = answer && typeof answer === "object" ? answer : {};
  const out = cut(a.output, MAX_OUTPUT_CHARS);
  const result = a.passed === true ? "passed" : a.passed === false ? "failed" : "not scored";
  const seen = isNum(a.count) ? `, seen ${fmtInt(a.count)} time${a.count === 1 ? "" : "s"}` : "";
  return h("div", { class: `answer answer-${kind}`, "data-kind": kind },
    h("p", { class: "answer-head" },
      h("strong", { text: kind === "baseline" ? "Before (baseline)" : "After (recent)" }), " ",
      h("span", { class: `result result-${result.replace(" ", "-")}`, "data-passed": String(a.passed),
        text: result })),
    h("p", { class: "sub answer-meta", text: `${dateOnly(a.date)}${seen}` +
      `${isNum(a.score) ? `, score ${fmtNum(a.score)}` : ""}` +
      `${isNum(a.latency_ms) ? `, ${fmtMs(a.latency_ms)}` : ""}` }),
    h("pre", { class: "output", text: out.text }),
    out.cut ? h("p", { class: "sub", text: `… ${fmtInt(out.cut)} more characters not shown` }) : null);
}

function diffBlock(diff) {
  const parts = Array.isArray(diff) ? diff : [];
  let budget = MAX_DIFF_CHARS;
  const nodes = [];
  for (const part of parts) {
    if (budget <= 0) { nodes.push(h("span", { class: "sub", text: " … (diff cut)" })); break; }
    const text = cut(part && part.text, budget).text;
    budget -= text.length;
    const op = part && part.op;
    // <ins>/<del> carry the meaning; the hidden words say it to a screen reader as well.
    if (op === "insert") nodes.push(h("ins", {}, h("span", { class: "sr-only", text: "[added: " }), text,
      h("span", { class: "sr-only", text: "]" })));
    else if (op === "delete") nodes.push(h("del", {}, h("span", { class: "sr-only", text: "[removed: " }),
      text, h("span", { class: "sr-only", text: "]" })));
    else nodes.push(text);
  }
  if (!nodes.length) return h("p", { class: "empty", text: "No word diff published." });
  return h("div", { class: "diff-block" },
    h("p", { class: "sub", text: "Word diff, before → after: removed words struck through, added words underlined." }),
    h("pre", { class: "output diff" }, nodes));
}

function promptCard(p, i) {
  const where = [p.suite, p.prompt_id].filter(Boolean).map(String).join(" / ") || `prompt ${i + 1}`;
  const metric = p.metric ? (METRIC_NAMES[p.metric] || String(p.metric).replaceAll("_", " ")).toLowerCase()
    : null;
  return h("article", { class: "evidence-prompt", "data-prompt-id": String(p.prompt_id ?? "") },
    h("h4", { text: where }),
    metric || isNum(p.p_adjusted) ? h("p", { class: "sub",
      text: `${metric ? `evidence: ${metric}` : ""}${isNum(p.p_adjusted) ? `, adjusted p ${fmtP(p.p_adjusted)}` : ""}` }) : null,
    h("div", { class: "answers" }, answerBlock("baseline", p.baseline), answerBlock("recent", p.recent)),
    diffBlock(p.diff));
}

/**
 * The before/after panel. `summary` is the model's models.json entry, `result` the evidence
 * route's answer (null when models.json says none was published, so nothing was fetched).
 */
export function evidenceSection(summary, result) {
  const section = h("section", { "aria-labelledby": "evidence-heading", id: "before-after" },
    h("h3", { id: "evidence-heading", text: "Before and after" }),
    h("p", { class: "hint", text: "For the prompts with the strongest evidence: the most common " +
      "answer of the baseline window and of the recent window, and what changed between them." }));
  const data = result && result.ok && result.data && typeof result.data === "object" ? result.data : null;
  const prompts = data && Array.isArray(data.prompts) ? data.prompts : [];
  if (!prompts.length) {
    const why = result && !result.ok && result.status !== 404
      ? `Could not load the evidence (${result.status ? `HTTP ${result.status}` : "network error"}).`
      : summary && (summary.verdict === "watch" || summary.verdict === "drifting")
        ? "No before/after evidence was published for this model."
        : "No before/after evidence: it is published only for models on watch or drifting.";
    section.append(h("p", { class: "empty", id: "evidence-none", text: why }));
    return section;
  }
  section.dataset.state = "ready";
  section.append(...prompts.map(promptCard));
  return section;
}
