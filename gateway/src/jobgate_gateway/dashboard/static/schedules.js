// Schedules (own; an admin's: all) with a switch that enables or disables each one.

import * as api from "./api.js";
import { ago, announce, fill, h, timeEl } from "./dom.js";

function every(s) {
  if (s.cron) return `cron ${s.cron}`;
  if (!s.interval_minutes) return "–";
  const m = s.interval_minutes;
  return m % 60 === 0 ? `every ${m / 60} h` : `every ${m} min`;
}

export function mount(main) {
  let stopped = false;
  const message = h("p.notice.error", { role: "alert", hidden: true });
  const tbody = h("tbody");
  const count = h("p.muted.small");
  fill(
    main,
    h("div.view-head", {}, h("h1", { text: "Schedules" })),
    message,
    h(
      "div.table-wrap",
      {},
      h(
        "table.schedules",
        {},
        h("caption.visually-hidden", { text: "Schedules, newest first" }),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Name", "Kind", "When", "Next run", "Last run", "Runs (ok / failed)", "Enabled"].map(
              (text) => h("th", { scope: "col", text }),
            ),
          ),
        ),
        tbody,
      ),
    ),
    count,
  );

  function toggleButton(schedule, row) {
    const button = h(
      "button.switch",
      {
        type: "button",
        role: "switch",
        "aria-checked": String(schedule.enabled),
        "aria-label": `Schedule ${schedule.name} enabled`,
      },
      h("span.switch-track", { "aria-hidden": "true" }),
      h("span.switch-text", { text: schedule.enabled ? "On" : "Off" }),
    );
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const updated = await api.post(
          `/api/v1/schedules/${encodeURIComponent(schedule.id)}/toggle`,
        );
        row.replaceWith(renderRow(updated));
        announce(`Schedule ${updated.name} ${updated.enabled ? "enabled" : "disabled"}`);
        document.querySelector(`tr[data-schedule-id="${updated.id}"] button.switch`)?.focus();
      } catch (exc) {
        const why = exc.describe ? exc.describe() : exc;
        message.textContent = `The schedule could not be changed: ${why}`;
        message.hidden = false;
        button.disabled = false;
      }
    });
    return button;
  }

  function renderRow(s) {
    const row = h("tr", { dataset: { scheduleId: s.id, enabled: String(s.enabled) } });
    fill(
      row,
      h("td", { "data-label": "Name", text: s.name }),
      h("td", { "data-label": "Kind", text: s.kind }),
      h("td", { "data-label": "When", text: every(s) }),
      h(
        "td",
        { "data-label": "Next run" },
        s.enabled ? timeEl(s.next_run_at, ago(s.next_run_at)) : "–",
      ),
      h(
        "td",
        { "data-label": "Last run" },
        timeEl(s.last_run_at, s.last_run_at ? ago(s.last_run_at) : undefined),
      ),
      h("td", {
        "data-label": "Runs",
        text: `${s.total_runs} (${s.successful_runs} / ${s.failed_runs})`,
      }),
      h("td", { "data-label": "Enabled" }, toggleButton(s, row)),
    );
    return row;
  }

  (async () => {
    try {
      const body = await api.get("/api/v1/schedules?limit=100");
      if (stopped) return;
      fill(
        tbody,
        body.schedules.length
          ? body.schedules.map(renderRow)
          : h("tr.empty", {}, h("td", { colspan: 7, text: "No schedules yet." })),
      );
      count.textContent =
        body.total > body.schedules.length
          ? `${body.schedules.length} of ${body.total} schedules shown.`
          : `${body.total} schedule${body.total === 1 ? "" : "s"}.`;
    } catch (exc) {
      message.textContent = `Schedules could not be loaded: ${exc.describe ? exc.describe() : exc}`;
      message.hidden = false;
    }
  })();

  return () => {
    stopped = true;
  };
}
