// Building HTML and SVG nodes. Every value from the API is inserted as text, never as markup:
// model ids come from community submissions.

const SVG_NS = "http://www.w3.org/2000/svg";

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

/** An HTML element: `h("p", {class: "hint", text: "…"}, ...children)`. */
export const h = (tag, attrs, ...children) => build(null, tag, attrs, children);

/** An SVG element, same calling convention as `h`. */
export const s = (tag, attrs, ...children) => build(SVG_NS, tag, attrs, children);

export const $ = (id) => document.getElementById(id);
