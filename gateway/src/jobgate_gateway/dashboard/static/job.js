// One job: its facts, a live progress bar, its timeline (the stored events, then live
// Server-Sent Events from the last one read, so nothing is shown twice or missed), its log
// lines (followed while it runs), its outputs to download, and Cancel / Retry.
//
// The streams carry no log lines, so the log is polled with `?after_id=` while the job is
// not final; one read made after the job was seen final takes the last lines, then polling
// stops. Reads never overlap (a line is never shown twice), and the list scrolls with new
// lines only when the reader is already at its bottom.

import * as api from "./api.js";
import {
  TERMINAL,
  announce,
  bytes,
  clock,
  dateTime,
  fill,
  h,
  jobSummary,
  progressBar,
  shortId,
  statusBadge,
  timeEl,
} from "./dom.js";
import { detailText } from "./jobs.js";
import { jobEvents } from "./live.js";

const STATE_EVENTS = [
  "created",
  "started",
  "pending",
  "retrying",
  "completed",
  "failed",
  "cancelled",
];
const LOG_FOLLOW_MS = 2000;
const LOG_PAGE = 500;
const AT_BOTTOM_PX = 4;
const CANCELLABLE = new Set(["pending", "running", "retrying"]);
const RETRYABLE = new Set(["failed", "cancelled"]);

function section(title, ...children) {
  const id = `section-${title.toLowerCase().replace(/[^a-z]+/g, "-")}`;
  return h("section.card", { "aria-labelledby": id }, h("h2", { id, text: title }), ...children);
}

export function mount(main, [jobId]) {
  let job = null;
  let stream = null;
  let lastEventId = 0;
  let logAfter = 0;
  let logTimer = null;
  let logBusy = false; // a read is under way; another one asked for meanwhile waits for it
  let logAgain = false;
  let logDone = false; // the read after the job was seen final is done: no line comes later
  let streamLive = false;
  let stopped = false;
  let refetchTimer = null;

  const title = h("h1", { text: `Job ${shortId(jobId)}` });
  const liveState = h("span.live-state", { "data-state": "closed", text: "" });
  const message = h("p.notice.error", { role: "alert", hidden: true });
  const statusBox = h("span.status-box");
  const cancelButton = h("button.button.danger", {
    type: "button",
    text: "Cancel job",
    disabled: true,
  });
  const retryButton = h("button.button", { type: "button", text: "Retry job", disabled: true });
  const bar = progressBar("Progress of this job");
  const detail = h("p.detail");
  const facts = h("dl.facts");
  const params = h("pre.json");
  const result = h("pre.json");
  const resultSection = section("Result", result);
  resultSection.hidden = true;
  const failures = h("ul.failures");
  const failuresSection = section("Failed items", failures);
  failuresSection.hidden = true;
  const timeline = h("ol.timeline", { "aria-live": "polite" });
  const logList = h("ol.log", { tabindex: "0", "aria-label": "Log lines" });
  const logState = h("span.log-state");
  const outputs = h("ul.outputs");

  fill(
    main,
    h("p.breadcrumbs", {}, h("a", { href: "#/jobs", text: "← All jobs" })),
    h("div.view-head", {}, title, statusBox, liveState),
    message,
    h(
      "div.card.summary",
      {},
      h("div.progress-row", {}, bar),
      detail,
      h("div.actions", {}, cancelButton, retryButton),
    ),
    h("div.grid-2", {}, section("Details", facts), section("Timeline", timeline)),
    section("Parameters", params),
    resultSection,
    failuresSection,
    section("Logs", h("p.muted", {}, logState), logList),
    section("Outputs", outputs),
  );

  function showError(text) {
    message.textContent = text;
    message.hidden = false;
  }

  function fact(term, value) {
    return [h("dt", { text: term }), h("dd", {}, value ?? "–")];
  }

  function render() {
    if (!job) return;
    title.textContent = `${job.kind} job ${shortId(job.id)}`;
    fill(statusBox, statusBadge(job.status));
    bar.set(job.progress);
    detail.textContent = detailText(job.progress_detail, job.throughput) || jobSummary(job);
    cancelButton.disabled = !CANCELLABLE.has(job.status);
    retryButton.disabled = !RETRYABLE.has(job.status);
    fill(
      facts,
      fact("ID", h("code", { text: job.id })),
      fact("Kind", job.kind),
      fact("Status", job.status),
      fact("Attempt", `${job.attempt} of ${job.max_attempts}`),
      fact("Priority", String(job.priority)),
      fact("Created", timeEl(job.created_at)),
      fact("Started", timeEl(job.started_at)),
      fact("Finished", timeEl(job.completed_at)),
      job.next_attempt_at && job.status === "retrying"
        ? fact("Next attempt", timeEl(job.next_attempt_at))
        : null,
      job.error ? fact("Error", h("span.error-text", { text: job.error })) : null,
      job.request_id ? fact("Request id", h("code", { text: job.request_id })) : null,
    );
    params.textContent = JSON.stringify(job.params, null, 2);
    resultSection.hidden = job.result === null || job.result === undefined;
    result.textContent = resultSection.hidden ? "" : JSON.stringify(job.result, null, 2);
    failuresSection.hidden = !job.failures?.length;
    fill(
      failures,
      (job.failures || []).map((f) => h("li", {}, h("code", { text: f.path }), ` — ${f.error}`)),
    );
    showLogState();
    // Known final (from the stream, a cancel, a read): the last lines are read at once.
    if (TERMINAL.has(job.status) && !logDone) loadLogs();
  }

  async function loadJob() {
    try {
      const body = await api.get(`/api/v1/jobs/${encodeURIComponent(jobId)}`);
      if (stopped) return;
      job = body.job;
      message.hidden = true;
      render();
    } catch (exc) {
      if (stopped) return;
      if (exc.status === 404 || exc.status === 400) {
        fill(
          main,
          h("h1", { text: "Job not found" }),
          h(
            "p",
            {},
            "There is no such job among yours. ",
            h("a", { href: "#/jobs", text: "Back to the jobs" }),
          ),
        );
        stopped = true;
        closeStreams();
        return;
      }
      showError(`The job could not be loaded: ${exc.describe ? exc.describe() : exc}`);
    }
  }

  function refetchSoon() {
    clearTimeout(refetchTimer);
    refetchTimer = setTimeout(() => {
      loadJob().then(() => {
        if (job && TERMINAL.has(job.status)) loadOutputs();
      });
      loadLogs();
    }, 150);
  }

  function addTimeline(event) {
    if (event.event === "progress") return;
    const item = h(
      "li",
      { dataset: { event: event.event } },
      timeEl(event.created_at),
      " ",
      statusBadge(event.event),
      event.attempt ? h("span.muted", { text: ` attempt ${event.attempt}` }) : null,
      event.error ? h("span.error-text", { text: event.error }) : null,
    );
    timeline.append(item);
  }

  async function loadTimeline() {
    let more = true;
    while (more && !stopped) {
      const body = await api.get(
        `/api/v1/jobs/${encodeURIComponent(jobId)}/events?format=json&last_event_id=${lastEventId}`,
      );
      for (const event of body.events) addTimeline(event);
      lastEventId = body.last_event_id || lastEventId;
      more = body.more;
    }
  }

  function follow() {
    if (stream || stopped) return;
    stream = jobEvents(jobId, {
      lastEventId,
      names: [...STATE_EVENTS, "progress"],
      onState(state) {
        streamLive = state === "live";
        liveState.dataset.state = state;
        liveState.textContent = state === "live" ? "live" : state === "closed" ? "" : `${state}…`;
      },
      onEvent(name, data, id) {
        if (id) lastEventId = Math.max(lastEventId, Number(id) || 0);
        if (name === "end") {
          stream = null;
          refetchSoon();
          return;
        }
        if (!data) return;
        if (name === "progress") {
          if (job && !TERMINAL.has(job.status)) {
            job = {
              ...job,
              status: "running",
              progress: data.progress ?? job.progress,
              progress_detail: { ...job.progress_detail, ...(data.progress_detail || {}) },
            };
            bar.set(job.progress);
            detail.textContent = detailText(job.progress_detail, null);
            showLogState();
          }
          return;
        }
        addTimeline(data);
        if (job) {
          job = { ...job, status: data.status || job.status, error: data.error ?? job.error };
          if (data.progress !== undefined) job.progress = data.progress;
          render();
        }
        announce(`Job ${shortId(jobId)} ${name}`);
        refetchSoon();
      },
    });
  }

  function closeStreams() {
    if (stream) stream.close();
    stream = null;
    clearTimeout(logTimer);
    clearTimeout(refetchTimer);
  }

  function showLogState() {
    const lines = logList.children.length;
    logList.hidden = lines === 0;
    if (!job) {
      logState.textContent = "";
    } else if (!TERMINAL.has(job.status)) {
      logState.textContent =
        job.status === "running"
          ? "Following the log while the job runs."
          : "The log follows here once the job runs.";
    } else if (!logDone) {
      logState.textContent = "Reading the last log lines…";
    } else {
      logState.textContent = lines
        ? "The job has finished: this is its whole log."
        : "No log lines.";
    }
    logState.dataset.following = String(!logDone);
  }

  function logItem(line) {
    return h(
      `li.level-${String(line.level).toLowerCase()}`,
      {},
      h("time", { datetime: line.ts, title: dateTime(line.ts), text: clock(line.ts) }),
      h("span.level", { text: line.level }),
      h("span.message", { text: line.message }),
    );
  }

  /** Every line after the last one shown, page by page. */
  async function readLogs() {
    let more = true;
    while (more && !stopped) {
      const body = await api.get(
        `/api/v1/jobs/${encodeURIComponent(jobId)}/logs?after_id=${logAfter}&limit=${LOG_PAGE}`,
      );
      if (stopped) return;
      const fresh = body.logs.filter((line) => line.id > logAfter);
      if (fresh.length) {
        // Measured before the lines go in: was the reader following the end?
        const atBottom =
          logList.hidden ||
          logList.scrollHeight - logList.scrollTop - logList.clientHeight <= AT_BOTTOM_PX;
        const batch = document.createDocumentFragment();
        for (const line of fresh) {
          logAfter = Math.max(logAfter, line.id);
          batch.append(logItem(line));
        }
        logList.append(batch);
        logList.hidden = false;
        if (atBottom) logList.scrollTop = logList.scrollHeight;
      }
      more = body.logs.length === LOG_PAGE;
    }
  }

  /** One round of following; `refresh` (the timer's rounds) also reloads the job when no
   * live stream tells its status. */
  async function loadLogs({ refresh = false } = {}) {
    if (stopped || logDone) return; // a retry sets logDone back to false
    if (logBusy) {
      logAgain = true;
      return;
    }
    logBusy = true;
    clearTimeout(logTimer);
    try {
      do {
        logAgain = false;
        if (refresh && !streamLive && job && !TERMINAL.has(job.status)) await loadJob();
        const final = Boolean(job && TERMINAL.has(job.status));
        await readLogs();
        // Still final afterwards (not retried meanwhile): that read had every line.
        if (final && job && TERMINAL.has(job.status)) logDone = true;
      } while (logAgain && !logDone && !stopped);
    } catch {
      /* the next round tries again */
    } finally {
      logBusy = false;
    }
    if (stopped) return;
    showLogState();
    if (!logDone) logTimer = setTimeout(() => loadLogs({ refresh: true }), LOG_FOLLOW_MS);
  }

  async function loadOutputs() {
    try {
      const body = await api.get(`/api/v1/jobs/${encodeURIComponent(jobId)}/output`);
      if (stopped) return;
      if (!body.files.length) {
        fill(outputs, h("li.muted.none", { text: "No output files." }));
        return;
      }
      fill(
        outputs,
        body.files.map((file) => {
          const name = file.filename || file.name || file.id;
          const button = h("button.button.secondary", {
            type: "button",
            text: `Download ${name}`,
          });
          button.addEventListener("click", async () => {
            button.disabled = true;
            try {
              const size = await api.download(file.download_url, name);
              announce(`Downloaded ${name}, ${bytes(size)}`);
            } catch (exc) {
              showError(`Download failed: ${exc.describe ? exc.describe() : exc}`);
            } finally {
              button.disabled = false;
            }
          });
          return h("li", {}, button, h("span.muted", { text: ` ${bytes(file.size)}` }));
        }),
      );
    } catch (exc) {
      fill(outputs, h("li.muted.none", { text: `Outputs unavailable: ${exc.message}` }));
    }
  }

  cancelButton.addEventListener("click", async () => {
    cancelButton.disabled = true;
    try {
      job = await api.post(`/api/v1/jobs/${encodeURIComponent(jobId)}/cancel`);
      render();
      announce("Cancel requested");
      refetchSoon();
    } catch (exc) {
      showError(`Cancel failed: ${exc.describe ? exc.describe() : exc}`);
      render();
    }
  });

  retryButton.addEventListener("click", async () => {
    retryButton.disabled = true;
    try {
      job = await api.post(`/api/v1/jobs/${encodeURIComponent(jobId)}/retry`);
      logDone = false; // the new attempt's lines come after the old ones
      render();
      announce("Job queued again");
      follow(); // its previous stream ended with the job; a new attempt has a new one
      loadLogs();
    } catch (exc) {
      showError(`Retry failed: ${exc.describe ? exc.describe() : exc}`);
      render();
    }
  });

  (async () => {
    await loadJob();
    if (stopped || !job) return;
    try {
      await loadTimeline();
    } catch (exc) {
      showError(`The timeline could not be loaded: ${exc.describe ? exc.describe() : exc}`);
    }
    if (stopped) return;
    if (!TERMINAL.has(job.status)) follow();
    loadLogs();
    loadOutputs();
  })();

  return () => {
    stopped = true;
    closeStreams();
  };
}
