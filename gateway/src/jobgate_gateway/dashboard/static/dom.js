// Small DOM and formatting helpers. Text always goes in through textContent (never
// innerHTML), so nothing a job, a log line or a user name holds can become markup.

/** h('tag.class', {attr: value, on: {click: fn}}, ...children): one element. */
export function h(spec, props = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "on") {
      for (const [name, fn] of Object.entries(value)) el.addEventListener(name, fn);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "text") {
      el.textContent = String(value);
    } else if (key in el && typeof value !== "string") {
      el[key] = value; // value, checked, disabled, hidden…
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const SVG_NS = "http://www.w3.org/2000/svg";

export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Tell screen readers what just happened (a polite live region). */
export function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  setTimeout(() => (region.textContent = message), 30);
}

// --- formatting -------------------------------------------------------------------------

const UNITS = ["B", "KB", "MB", "GB", "TB", "PB"];

export function bytes(n) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return "–";
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

export function rate(bps) {
  if (!bps) return "";
  return `${(bps / (1024 * 1024)).toFixed(1)} MB/s`;
}

export function dateTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, {
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

/** The time of day only (a log line's; its date goes in a title). */
export function clock(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** "12 s ago", "3 min ago", "in 5 min". */
export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const seconds = Math.round((now - new Date(iso).getTime()) / 1000);
  const future = seconds < 0;
  const s = Math.abs(seconds);
  let text;
  if (s < 60) text = `${s} s`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h`;
  else text = `${Math.floor(s / 86400)} d`;
  return future ? `in ${text}` : `${text} ago`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Number(seconds);
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function shortId(id) {
  return String(id || "").slice(0, 8);
}

/** A `<time>` element with a readable text and the exact instant in its title. */
export function timeEl(iso, text) {
  if (!iso) return h("span.muted", { text: "–" });
  return h("time", { datetime: iso, title: dateTime(iso), text: text ?? dateTime(iso) });
}

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

export function statusBadge(status) {
  return h(`span.badge.status-${status || "unknown"}`, { text: status || "unknown" });
}

/** A native progress bar with its percentage as text beside it (both kept in step). */
export function progressBar(label) {
  const bar = h("progress", { max: 100, value: 0, "aria-label": label });
  const text = h("span.pct", { text: "0 %" });
  const wrap = h("span.progress", {}, bar, text);
  wrap.set = (pct) => {
    const value = Math.max(0, Math.min(100, Math.round(Number(pct) || 0)));
    bar.value = value;
    bar.dataset.value = String(value);
    text.textContent = `${value} %`;
  };
  return wrap;
}

/** What a job is about, in a few words, from its kind's parameters. */
export function jobSummary(job) {
  const p = job.params || {};
  switch (job.kind) {
    case "cache": {
      const paths = [...(p.directories || []), ...(p.files || [])];
      if (!paths.length) return "";
      return paths.length > 1 ? `${paths[0]} (+${paths.length - 1})` : paths[0];
    }
    case "convert":
      return [p.input_name || p.input_file, p.bitrate].filter(Boolean).join(" · ");
    case "scrape":
      return [p.mode, p.value].filter(Boolean).join(" ");
    case "container":
      return [p.image, p.name].filter(Boolean).join(" · ");
    case "task":
      return p.name || p.handler || "";
    default:
      return "";
  }
}
