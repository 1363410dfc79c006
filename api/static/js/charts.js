// The two chart shapes of the dashboard, drawn as SVG: a small bar chart (submissions per day)
// and a line chart over dates (a model's history), which can carry a change-point marker. Each
// chart is one `role="img"` element with a text summary as its label; each bar, point and marker
// carries a <title> with its date and value.

import { s } from "./dom.js";
import { dayStr, fmtInt, isNum } from "./format.js";

/** The smallest "round" number at or above v, so axis labels read well. */
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const f of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (f * p >= v) return f * p;
  return 10 * p;
}

/** One small bar chart for one model: one bar per day of `days`, a day at zero draws no bar. */
export function barChart(modelId, days, counts) {
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
  const bars = counts.map((c, i) => (c > 0
    ? s("rect", { class: "bar", x: (L + i * bw + bw * 0.12).toFixed(2), y: y(c).toFixed(2),
        width: Math.max(bw * 0.76, 0.8).toFixed(2), height: (H - B - y(c)).toFixed(2) },
      s("title", { text: `${days[i]}: ${fmtInt(c)} submissions` }))
    : null));
  return s("svg", { class: "chart submissions-chart", viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": label, "data-model-id": modelId, preserveAspectRatio: "xMidYMid meet" },
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

/**
 * A line chart of `points` ({day, value}, day as from `dayNum`); a null value breaks the line.
 * opts: format (value → text, for the axis), valueFormat (for each point's title; else format),
 * label (the text summary), yMax (else rounded up from the data),
 * cls / lineCls / dotCls (CSS classes), window ({start, end} days, shaded), marker ({day,
 * earliest, latest, label}: a vertical line at `day` over a band from `earliest` to `latest`).
 */
export function lineChart(points, opts) {
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
      // The band starts half a day before its first point, so that point sits inside it.
      const xa = pts.length === 1 ? L : x(a) - (a === x0 ? 0 : 0.5 * (W - L - R) / span);
      shade = s("rect", { class: "window", x: xa.toFixed(1), y: T,
        width: Math.max(x(b) - xa, 2).toFixed(1), height: H - T - B },
      s("title", { text: "recent window" }));
    }
  }
  const marker = changeMarker(opts.marker, x0, x1, x, T, H - B);
  const ticks = [0, yMax / 2, yMax];
  const fmt = opts.format;
  const dots = pts.filter((p) => isNum(p.value)).map((p) => s("circle", { class: opts.dotCls,
      cx: x(p.day).toFixed(1), cy: y(p.value).toFixed(1), r: pts.length > 60 ? 1.5 : 2.5 },
    s("title", { text: `${dayStr(p.day)}: ${(opts.valueFormat || fmt)(p.value)}` })));
  return s("svg", { class: `chart line-chart ${opts.cls || ""}`, viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": opts.label, preserveAspectRatio: "xMidYMid meet" },
    shade,
    ticks.map((t) => s("line", { class: "grid", x1: L, x2: W - R, y1: y(t), y2: y(t) })),
    ticks.map((t) => s("text", { x: L - 5, y: y(t) + 3, "text-anchor": "end", text: fmt(t) })),
    s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }),
    marker,
    path ? s("path", { class: `line ${opts.lineCls}`, d: path }) : null,
    dots,
    pts.length ? s("text", { x: L, y: H - 7, text: dayStr(x0) }) : null,
    pts.length > 1 ? s("text", { x: W - R, y: H - 7, "text-anchor": "end", text: dayStr(x1) }) : null);
}

/**
 * The change-point marker of a line chart: its range of possible days as a band, its estimated
 * day as a line, and a short label; null when the day is not on the chart's axis (x0..x1).
 */
function changeMarker(cp, x0, x1, x, top, bottom) {
  if (!cp || !isNum(cp.day) || cp.day < x0 || cp.day > x1) return null;
  const lo = Math.max(isNum(cp.earliest) ? Math.min(cp.earliest, cp.day) : cp.day, x0);
  const hi = Math.min(isNum(cp.latest) ? Math.max(cp.latest, cp.day) : cp.day, x1);
  const xd = x(cp.day);
  const band = hi > lo ? s("rect", { class: "change-band", x: x(lo).toFixed(1), y: top,
    width: Math.max(x(hi) - x(lo), 2).toFixed(1), height: bottom - top }) : null;
  // The label sits on the side of the line with more room.
  const right = xd < (x(x0) + x(x1)) / 2;
  return s("g", { class: "change-point", "data-date": dayStr(cp.day),
      "data-earliest": dayStr(lo), "data-latest": dayStr(hi) },
    s("title", { text: cp.label }),
    band,
    s("line", { class: "change-line", x1: xd.toFixed(1), x2: xd.toFixed(1), y1: top, y2: bottom }),
    s("text", { class: "change-label", x: (xd + (right ? 4 : -4)).toFixed(1), y: top + 10,
      "text-anchor": right ? "start" : "end", text: `change ≈ ${dayStr(cp.day).slice(5)}` }));
}
