// The jobs list: every kind, filters (kind, status, and owner for admins), pages, and live
// progress bars driven by ONE stream of all the caller's jobs (stats-service's /ws/jobs),
// not by polling: a credential may hold at most 50 streams, a page may show more jobs.
//
// Progress ticks move the bars at once. A state change is applied at once too, and then the
// page is read again (at most once a second, and only because something happened): the
// stream's two sources (the events table and the broker) may deliver a late tick or an
// event older than the list just read, and the re-read settles the rows on the truth. A job
// submitted elsewhere comes in the same way, through its `created` event.

import * as api from "./api.js";
import {
  TERMINAL,
  ago,
  bytes,
  fill,
  h,
  jobSummary,
  progressBar,
  rate,
  shortId,
  statusBadge,
  timeEl,
} from "./dom.js";
import { liveSocket } from "./live.js";

const STATUSES = ["pending", "running", "retrying", "completed", "failed", "cancelled"];
const PAGE_SIZES = [10, 25, 50, 100];
const RELOAD_DELAY_MS = 400;
const RELOAD_MIN_GAP_MS = 1000;

let kindsCache = null;

async function publicKinds() {
  if (!kindsCache) {
    kindsCache = api
      .get("/info", { auth: false })
      .then((info) => info.supported_kinds || info.job_kinds || [])
      .catch(() => ["cache", "convert", "scrape", "container", "task"]);
  }
  return kindsCache;
}

function select(id, label, options, value) {
  const el = h(
    "select",
    { id, name: id.replace("filter-", "") },
    options.map(([v, text]) => h("option", { value: v, text, selected: v === value })),
  );
  return h("div.field.inline", {}, h("label", { for: id, text: label }), el);
}

export function detailText(detail, throughput) {
  if (!detail) return "";
  const parts = [];
  if (detail.items_total) parts.push(`${detail.items_done}/${detail.items_total} items`);
  if (detail.items_failed) parts.push(`${detail.items_failed} failed`);
  if (detail.bytes_total) parts.push(`${bytes(detail.bytes_done)} of ${bytes(detail.bytes_total)}`);
  const speed = rate(throughput?.bytes_per_second);
  if (speed) parts.push(speed);
  return parts.join(" · ");
}

export function mount(main, [query]) {
  const params = new URLSearchParams(query || "");
  const admin = api.isAdmin();
  const filters = {
    kind: params.get("kind") || "",
    status: params.get("status") || "",
    owner: admin ? params.get("owner") || "" : "",
    limit: PAGE_SIZES.includes(Number(params.get("limit"))) ? Number(params.get("limit")) : 25,
    offset: Math.max(0, Number(params.get("offset")) || 0),
  };
  const rows = new Map(); // job id -> {job, tr, bar, status, detail}
  const users = new Map(); // user id -> username (admins)
  let total = 0;
  let loading = false;
  let again = false;
  let timer = null;
  let lastLoad = 0;
  let stopped = false;

  const liveState = h("span.live-state", { "data-state": "connecting", text: "connecting…" });
  const message = h("p.notice.error", { role: "alert", hidden: true });
  const count = h("span.count", { "aria-live": "polite" });
  const prev = h("button.button.secondary", { type: "button", text: "← Newer" });
  const next = h("button.button.secondary", { type: "button", text: "Older →" });
  const tbody = h("tbody");
  const emptyRow = h(
    "tr.empty",
    { hidden: true },
    h("td", { colspan: admin ? 7 : 6, text: "No jobs match these filters." }),
  );
  tbody.append(emptyRow);

  const ownerHead = admin ? h("th", { scope: "col", text: "Owner" }) : null;
  const table = h(
    "table.jobs",
    {},
    h("caption.visually-hidden", { text: "Jobs, newest first, with live progress" }),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { scope: "col", text: "Job" }),
        h("th", { scope: "col", text: "What" }),
        h("th", { scope: "col", text: "Status" }),
        h("th", { scope: "col", text: "Progress" }),
        ownerHead,
        h("th", { scope: "col", text: "Created" }),
        h("th", { scope: "col", text: "Attempt" }),
      ),
    ),
    tbody,
  );

  const form = h("form.filters", { "aria-label": "Filter jobs" });
  fill(
    main,
    h("div.view-head", {}, h("h1", { text: "Jobs" }), liveState),
    form,
    message,
    h("div.table-wrap", {}, table),
    h("div.pager", {}, prev, count, next),
  );

  function ownerName(id) {
    return users.get(id) || shortId(id);
  }

  function writeUrl() {
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries(filters)) {
      if (value !== "" && !(key === "offset" && value === 0) && !(key === "limit" && value === 25))
        q.set(key, String(value));
    }
    const hash = q.toString() ? `#/jobs?${q}` : "#/jobs";
    if (window.location.hash !== hash) history.replaceState(null, "", hash);
  }

  async function buildFilters() {
    const kinds = await publicKinds();
    if (admin) {
      try {
        const body = await api.get("/api/v1/auth/users?limit=1000");
        for (const u of body.users || []) users.set(u.id, u.username);
        for (const row of rows.values())
          if (row.owner) row.owner.textContent = ownerName(row.job.owner_id);
      } catch {
        /* names stay ids */
      }
    }
    if (stopped) return;
    fill(
      form,
      select(
        "filter-kind",
        "Kind",
        [["", "every kind"], ...kinds.map((k) => [k, k])],
        filters.kind,
      ),
      select(
        "filter-status",
        "Status",
        [["", "any status"], ...STATUSES.map((s) => [s, s])],
        filters.status,
      ),
      admin
        ? select(
            "filter-owner",
            "Owner",
            [["", "everybody"], ...[...users].map(([id, name]) => [id, name])],
            filters.owner,
          )
        : null,
      select(
        "filter-limit",
        "Per page",
        PAGE_SIZES.map((n) => [String(n), String(n)]),
        String(filters.limit),
      ),
    );
    form.addEventListener("change", (event) => {
      const name = event.target.name;
      filters[name] = name === "limit" ? Number(event.target.value) : event.target.value;
      filters.offset = 0;
      writeUrl();
      load();
    });
  }

  function matches(job) {
    return (
      (!filters.kind || job.kind === filters.kind) &&
      (!filters.status || job.status === filters.status) &&
      (!filters.owner || job.owner_id === filters.owner)
    );
  }

  function makeRow(job) {
    const bar = progressBar(`Progress of job ${shortId(job.id)}`);
    const statusCell = h("td", { "data-label": "Status" });
    const detail = h("span.detail");
    const attempt = h("td", { "data-label": "Attempt" });
    const what = h("td.what", { "data-label": "What" });
    const created = h("td", { "data-label": "Created" });
    const owner = admin ? h("td", { "data-label": "Owner" }) : null;
    const link = h("a", { href: `#/jobs/${job.id}` }, h("code", { text: shortId(job.id) }));
    const tr = h(
      "tr",
      { dataset: { jobId: job.id } },
      h("td", { "data-label": "Job" }, link, " ", h("span.kind", { text: job.kind })),
      what,
      statusCell,
      h("td.progress-cell", { "data-label": "Progress" }, bar, detail),
      owner,
      created,
      attempt,
    );
    const row = { job, tr, bar, statusCell, detail, attempt, what, created, owner };
    update(row, job);
    return row;
  }

  function update(row, job) {
    row.job = job;
    row.tr.dataset.status = job.status;
    fill(row.statusCell, statusBadge(job.status));
    if (job.error) row.statusCell.append(h("span.error-text", { text: job.error }));
    row.bar.set(job.progress);
    row.detail.textContent = detailText(job.progress_detail, job.throughput);
    row.attempt.textContent = `${job.attempt}/${job.max_attempts}`;
    row.what.textContent = jobSummary(job) || "–";
    fill(row.created, timeEl(job.created_at, ago(job.created_at)));
    if (row.owner) row.owner.textContent = ownerName(job.owner_id);
  }

  async function load() {
    if (loading) {
      again = true;
      return;
    }
    loading = true;
    again = false;
    lastLoad = Date.now();
    const q = new URLSearchParams({ limit: String(filters.limit), offset: String(filters.offset) });
    for (const key of ["kind", "status", "owner"]) if (filters[key]) q.set(key, filters[key]);
    try {
      const { body, response } = await api.get(`/api/v1/jobs?${q}`, { withResponse: true });
      if (stopped) return;
      total = Number(response.headers.get("X-Total-Count")) || body.length;
      render(body);
      message.hidden = true;
    } catch (exc) {
      if (stopped) return;
      message.textContent = `Jobs could not be loaded: ${exc.describe ? exc.describe() : exc}`;
      message.hidden = false;
    } finally {
      loading = false;
      if (again && !stopped) schedule();
    }
  }

  function schedule() {
    if (loading) {
      again = true;
      return;
    }
    if (timer) return;
    const wait = Math.max(RELOAD_DELAY_MS, lastLoad + RELOAD_MIN_GAP_MS - Date.now());
    timer = setTimeout(() => {
      timer = null;
      load();
    }, wait);
  }

  function settled(shown, read) {
    // A tick that arrived while the list was being read is newer than what was read: the
    // bar of a job still in the same attempt never goes back.
    const same =
      shown.status === "running" && read.status === "running" && shown.attempt === read.attempt;
    if (!same || (shown.progress ?? 0) <= (read.progress ?? 0)) return read;
    return { ...read, progress: shown.progress, progress_detail: shown.progress_detail };
  }

  function render(list) {
    const seen = new Set();
    let before = emptyRow;
    for (const job of list) {
      seen.add(job.id);
      let row = rows.get(job.id);
      if (row) update(row, settled(row.job, job));
      else {
        row = makeRow(job);
        rows.set(job.id, row);
      }
      // Keep the server's order, moving rows only where needed (focus stays where it is).
      if (before.nextSibling !== row.tr) before.after(row.tr);
      before = row.tr;
    }
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        rows.delete(id);
      }
    }
    emptyRow.hidden = list.length > 0;
    const first = list.length ? filters.offset + 1 : 0;
    count.textContent = `${first}–${filters.offset + list.length} of ${total}`;
    prev.disabled = filters.offset === 0;
    next.disabled = filters.offset + list.length >= total;
  }

  function onMessage(msg) {
    if (msg.type === "subscribed") {
      load(); // (re)connected: read the list now, every later change comes on the stream
      return;
    }
    const row = rows.get(msg.job_id);
    if (msg.type === "progress") {
      if (!row || TERMINAL.has(row.job.status)) return; // a late tick of a finished job
      update(row, {
        ...row.job,
        status: "running",
        progress: msg.progress ?? row.job.progress,
        progress_detail: msg.progress_detail
          ? { ...row.job.progress_detail, ...msg.progress_detail }
          : row.job.progress_detail,
        throughput: msg.throughput,
      });
      return;
    }
    if (msg.type !== "status") return;
    if (row) {
      update(row, {
        ...row.job,
        status: msg.status,
        error: msg.error,
        attempt: msg.attempt ?? row.job.attempt,
        progress: msg.progress ?? row.job.progress,
        progress_detail: msg.progress_detail
          ? { ...row.job.progress_detail, ...msg.progress_detail }
          : row.job.progress_detail,
        throughput: TERMINAL.has(msg.status) ? null : row.job.throughput,
      });
      schedule();
    } else if (filters.offset === 0 && matches(msg)) {
      schedule(); // a new job (or one that now matches): read the first page again
    }
  }

  prev.addEventListener("click", () => {
    filters.offset = Math.max(0, filters.offset - filters.limit);
    writeUrl();
    load();
  });
  next.addEventListener("click", () => {
    filters.offset += filters.limit;
    writeUrl();
    load();
  });

  buildFilters();
  load(); // at once; read again when the stream says it is subscribed (nothing missed)
  const socket = liveSocket("/ws/jobs", {
    onMessage,
    onState(state) {
      liveState.dataset.state = state;
      liveState.textContent =
        state === "live" ? "live" : state === "closed" ? "offline" : `${state}…`;
    },
  });
  const clock = setInterval(() => {
    // Relative times ("12 s ago") age without any request.
    for (const row of rows.values())
      fill(row.created, timeEl(row.job.created_at, ago(row.job.created_at)));
  }, 15000);

  return () => {
    stopped = true;
    clearTimeout(timer);
    clearInterval(clock);
    socket.close();
  };
}
