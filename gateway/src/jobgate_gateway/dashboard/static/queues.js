// Queue depths and the dead-letter count (admins): GET /api/v1/admin/queues, which reads
// RabbitMQ's management API. Read again every few seconds while shown (the management API
// itself samples its counts every few seconds).

import * as api from "./api.js";
import { fill, h } from "./dom.js";

const REFRESH_MS = 5000;
const ROLE_NAMES = {
  work: "work queue",
  dead_letter: "dead letters",
  retry: "retry delay",
  rpc: "RPC",
  other: "other",
};

export function mount(main) {
  let stopped = false;
  let timer = null;
  const message = h("p.notice.error", { role: "alert", hidden: true });
  const stats = h("div.stats");
  const tbody = h("tbody");
  const updated = h("p.muted.small");
  const refresh = h("button.button.secondary", { type: "button", text: "Refresh" });
  fill(
    main,
    h("div.view-head", {}, h("h1", { text: "Queues" })),
    h("div.toolbar", {}, refresh),
    message,
    stats,
    h(
      "div.table-wrap",
      {},
      h(
        "table.queues",
        {},
        h("caption.visually-hidden", { text: "The broker's queues" }),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Queue", "Role", "Ready", "Unacknowledged", "Consumers"].map((text) =>
              h("th", { scope: "col", text }),
            ),
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
      const body = await api.get("/api/v1/admin/queues");
      if (stopped) return;
      const dead = body.dead_letter.messages;
      fill(
        stats,
        h(
          `div.stat${dead ? ".alarm" : ""}`,
          { id: "dead-letters" },
          h("span.stat-label", { text: "Dead letters" }),
          h("span.stat-value", { "data-value": String(dead), text: String(dead) }),
          h("span.stat-note", { text: body.dead_letter.queue }),
        ),
        h(
          "div.stat",
          {},
          h("span.stat-label", { text: "Ready" }),
          h("span.stat-value", { text: String(body.totals.messages_ready) }),
          h("span.stat-note", { text: "messages waiting" }),
        ),
        h(
          "div.stat",
          {},
          h("span.stat-label", { text: "Unacknowledged" }),
          h("span.stat-value", { text: String(body.totals.messages_unacknowledged) }),
          h("span.stat-note", { text: "being worked on" }),
        ),
        h(
          "div.stat",
          {},
          h("span.stat-label", { text: "Consumers" }),
          h("span.stat-value", { text: String(body.totals.consumers) }),
          h("span.stat-note", { text: `vhost ${body.vhost}` }),
        ),
      );
      fill(
        tbody,
        body.queues.map((q) =>
          h(
            `tr.role-${q.role}`,
            { dataset: { queue: q.name } },
            h("td", { "data-label": "Queue" }, h("code", { text: q.name })),
            h("td", {
              "data-label": "Role",
              text: q.kind ? `${ROLE_NAMES[q.role]} (${q.kind})` : ROLE_NAMES[q.role],
            }),
            h("td.num", { "data-label": "Ready", text: String(q.messages_ready) }),
            h("td.num", {
              "data-label": "Unacknowledged",
              text: String(q.messages_unacknowledged),
            }),
            h("td.num", { "data-label": "Consumers", text: String(q.consumers) }),
          ),
        ),
      );
      const at = new Date().toLocaleTimeString();
      updated.textContent = `Updated ${at}; read again every ${REFRESH_MS / 1000} s.`;
      message.hidden = true;
    } catch (exc) {
      if (stopped) return;
      message.textContent = `Queues could not be read: ${exc.describe ? exc.describe() : exc}`;
      message.hidden = false;
    }
    if (!stopped) timer = setTimeout(load, REFRESH_MS);
  }

  refresh.addEventListener("click", load);
  load();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
