// Analytics: the caller's numbers (an admin's: everybody's) and a trend as a line chart
// drawn here in SVG (no charting library), with the same points as a table for those who
// do not see the chart.

import * as api from "./api.js";
import { duration, fill, h, svg } from "./dom.js";

const METRICS = [
  ["completion_rate", "Completion rate"],
  ["error_rate", "Error rate"],
  ["avg_duration", "Average duration"],
];
const DAYS = [7, 14, 30, 90];
const W = 640;
const H = 240;
const PAD = { left: 56, right: 16, top: 16, bottom: 36 };

function formatValue(metric, value) {
  if (value === null || value === undefined) return "–";
  if (metric === "avg_duration") return duration(value);
  return `${(Number(value) * 100).toFixed(1)} %`;
}

/** A line chart of `points` ({date, value}); returns an <svg>. */
export function lineChart(points, metric, label) {
  const values = points.map((p) => Number(p.value) || 0);
  const rateMetric = metric !== "avg_duration";
  const top = rateMetric ? 1 : Math.max(1, ...values) * 1.1;
  const innerW = W - PAD.left - PAD.right;
  const innerH = H - PAD.top - PAD.bottom;
  const x = (i) =>
    PAD.left + (points.length <= 1 ? innerW / 2 : (i * innerW) / (points.length - 1));
  const y = (v) => PAD.top + innerH - (v / top) * innerH;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => f * top);
  const labelEvery = Math.max(1, Math.ceil(points.length / 7));
  const path = points
    .map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(values[i]).toFixed(1)}`)
    .join(" ");
  return svg(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label },
    svg("title", {}, label),
    ticks.map((t) =>
      svg(
        "g",
        { class: "tick" },
        svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(t), y2: y(t), class: "grid" }),
        svg("text", { x: PAD.left - 8, y: y(t) + 4, "text-anchor": "end" }, formatValue(metric, t)),
      ),
    ),
    points.map((p, i) =>
      i % labelEvery === 0 || i === points.length - 1
        ? svg(
            "text",
            { x: x(i), y: H - 12, "text-anchor": "middle", class: "x-label" },
            String(p.date).slice(5),
          )
        : null,
    ),
    svg("path", { d: path, class: "line" }),
    points.map((p, i) =>
      svg(
        "circle",
        { cx: x(i), cy: y(values[i]), r: 3.5, class: "dot" },
        svg("title", {}, `${p.date}: ${formatValue(metric, p.value)}`),
      ),
    ),
  );
}

function number(label, value) {
  return h(
    "div.stat",
    {},
    h("span.stat-label", { text: label }),
    h("span.stat-value", { text: String(value) }),
  );
}

export function mount(main) {
  let stopped = false;
  const metric = h(
    "select",
    { id: "trend-metric", name: "metric" },
    METRICS.map(([v, t]) => h("option", { value: v, text: t })),
  );
  const days = h(
    "select",
    { id: "trend-days", name: "days" },
    DAYS.map((d) => h("option", { value: String(d), text: `${d} days`, selected: d === 30 })),
  );
  const message = h("p.notice.error", { role: "alert", hidden: true });
  const numbers = h("div.stats");
  const chart = h("figure.chart-box");
  const table = h("table.points");
  fill(
    main,
    h("div.view-head", {}, h("h1", { text: "Analytics" })),
    message,
    numbers,
    h(
      "section.card",
      { "aria-labelledby": "trend-title" },
      h("h2", { id: "trend-title", text: "Trend" }),
      h(
        "form.filters",
        { "aria-label": "Trend" },
        h("div.field.inline", {}, h("label", { for: "trend-metric", text: "Metric" }), metric),
        h("div.field.inline", {}, h("label", { for: "trend-days", text: "Period" }), days),
      ),
      chart,
      h(
        "details",
        {},
        h("summary", { text: "The points as a table" }),
        h("div.table-wrap", {}, table),
      ),
    ),
  );

  async function loadNumbers() {
    try {
      const body = await api.get("/api/v1/analytics/dashboard");
      const d = body.data || body;
      if (stopped) return;
      fill(
        numbers,
        number("Jobs", d.total_tasks),
        number("Completed", d.completed_tasks),
        number("Failed", d.failed_tasks),
        number("Running", d.running_tasks),
        number("Waiting", d.pending_tasks),
        number("Completion rate", `${((d.completion_rate || 0) * 100).toFixed(1)} %`),
        number("Average duration", duration(d.average_duration)),
      );
    } catch (exc) {
      message.textContent = `Numbers unavailable: ${exc.describe ? exc.describe() : exc}`;
      message.hidden = false;
    }
  }

  async function loadTrend() {
    const m = metric.value;
    const n = days.value;
    try {
      const body = await api.get(`/api/v1/analytics/trends?days=${n}&metric=${m}`);
      if (stopped) return;
      const points = body.data.points || [];
      const name = METRICS.find(([v]) => v === m)[1];
      fill(
        chart,
        lineChart(points, m, `${name} per day over the last ${n} days`),
        h("figcaption.muted.small", { text: `${name}, per day of completion, last ${n} days.` }),
      );
      fill(
        table,
        h("caption.visually-hidden", { text: `${name} per day` }),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col", text: "Day" }),
            h("th", { scope: "col", text: name }),
          ),
        ),
        h(
          "tbody",
          {},
          points.map((p) =>
            h("tr", {}, h("td", { text: p.date }), h("td.num", { text: formatValue(m, p.value) })),
          ),
        ),
      );
    } catch (exc) {
      message.textContent = `The trend is unavailable: ${exc.describe ? exc.describe() : exc}`;
      message.hidden = false;
    }
  }

  metric.addEventListener("change", loadTrend);
  days.addEventListener("change", loadTrend);
  loadNumbers();
  loadTrend();
  return () => {
    stopped = true;
  };
}
