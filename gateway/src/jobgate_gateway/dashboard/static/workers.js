// Workers with their heartbeat and load (seed 004's workers API, which every reader may
// read: Jobgate's own workers, and the caller's external ones). Heartbeats are a matter of
// time passing, not of events: the view reads them again every few seconds while shown.

import * as api from "./api.js";
import { ago, fill, h, shortId, statusBadge, timeEl } from "./dom.js";

const REFRESH_MS = 5000;

function card(label, value, note) {
  return h(
    "div.stat",
    {},
    h("span.stat-label", { text: label }),
    h("span.stat-value", { text: value }),
    note ? h("span.stat-note", { text: note }) : null,
  );
}

export function mount(main) {
  let stopped = false;
  let timer = null;
  const showStopped = h("input", { id: "workers-all", type: "checkbox" });
  const refresh = h("button.button.secondary", { type: "button", text: "Refresh" });
  const message = h("p.notice.error", { role: "alert", hidden: true });
  const stats = h("div.stats", { "aria-label": "Workers at a glance" });
  const tbody = h("tbody");
  const updated = h("p.muted.small");
  fill(
    main,
    h("div.view-head", {}, h("h1", { text: "Workers" })),
    h(
      "div.toolbar",
      {},
      h(
        "div.field.inline.check",
        {},
        showStopped,
        h("label", { for: "workers-all", text: "Show stopped workers" }),
      ),
      refresh,
    ),
    message,
    stats,
    h(
      "div.table-wrap",
      {},
      h(
        "table.workers",
        {},
        h("caption.visually-hidden", { text: "Workers, most recently heard first" }),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            [
              "Worker",
              "Kind",
              "Status",
              "Load",
              "Last heartbeat",
              "Host",
              "Done / failed",
              "Current job",
            ].map((text) => h("th", { scope: "col", text })),
          ),
        ),
        tbody,
      ),
    ),
    updated,
  );

  async function load() {
    clearTimeout(timer);
    try {
      const q = showStopped.checked ? "limit=100" : "status=active&limit=100";
      const [status, list] = await Promise.all([
        api.get("/api/v1/workers/status"),
        api.get(`/api/v1/workers?${q}`),
      ]);
      if (stopped) return;
      const summary = status.data;
      const workers = list.data;
      fill(
        stats,
        card(
          "Active workers",
          `${summary.active} of ${summary.total}`,
          summary.healthy ? "healthy" : "none alive",
        ),
        card("Load", `${summary.current_load} / ${summary.max_capacity}`, "jobs held / capacity"),
        Object.entries(summary.by_kind || {}).map(([kind, c]) =>
          card(kind, `${c.active} active`, `${c.busy} busy · ${c.total} known`),
        ),
      );
      fill(
        tbody,
        workers.length
          ? workers.map((w) =>
              h(
                "tr",
                { dataset: { workerId: w.worker_id, kind: w.kind } },
                h("td", { "data-label": "Worker" }, h("code", { text: w.worker_id })),
                h("td", { "data-label": "Kind", text: w.kind }),
                h(
                  "td",
                  { "data-label": "Status" },
                  statusBadge(w.status),
                  w.state && w.state !== w.status ? h("span.muted", { text: ` ${w.state}` }) : null,
                ),
                h(
                  "td",
                  { "data-label": "Load" },
                  h("meter", {
                    min: 0,
                    max: Math.max(1, w.max_capacity),
                    value: w.current_load,
                    "aria-label": `Load of ${w.worker_id}`,
                  }),
                  ` ${w.current_load}/${w.max_capacity}`,
                ),
                h(
                  "td",
                  { "data-label": "Last heartbeat" },
                  timeEl(w.last_heartbeat, ago(w.last_heartbeat)),
                ),
                h("td", {
                  "data-label": "Host",
                  text: [w.hostname, w.pid].filter(Boolean).join(" · ") || "–",
                }),
                h("td", {
                  "data-label": "Done / failed",
                  text: `${w.jobs_completed} / ${w.jobs_failed}`,
                }),
                h(
                  "td",
                  { "data-label": "Current job" },
                  w.current_task_id
                    ? h(
                        "a",
                        { href: `#/jobs/${w.current_task_id}` },
                        h("code", { text: shortId(w.current_task_id) }),
                      )
                    : "–",
                ),
              ),
            )
          : h("tr.empty", {}, h("td", { colspan: 8, text: "No workers to show." })),
      );
      const at = new Date().toLocaleTimeString();
      updated.textContent = `Updated ${at}; read again every ${REFRESH_MS / 1000} s.`;
      message.hidden = true;
    } catch (exc) {
      if (stopped) return;
      message.textContent = `Workers could not be loaded: ${exc.describe ? exc.describe() : exc}`;
      message.hidden = false;
    }
    if (!stopped) timer = setTimeout(load, REFRESH_MS);
  }

  showStopped.addEventListener("change", load);
  refresh.addEventListener("click", load);
  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
