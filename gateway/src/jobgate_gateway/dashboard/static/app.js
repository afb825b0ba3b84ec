// The dashboard's entry point: the login form, the top bar, and a router over the URL's
// fragment (#/jobs, #/jobs/<id>, #/workers, #/queues, #/schedules, #/analytics), so every
// view has an address to bookmark and the Back button works. Each view's `mount` returns
// the function that stops its streams and timers when another view replaces it.

import * as api from "./api.js";
import { announce, fill, h } from "./dom.js";
import * as analytics from "./analytics.js";
import * as job from "./job.js";
import * as jobs from "./jobs.js";
import * as queues from "./queues.js";
import * as schedules from "./schedules.js";
import * as workers from "./workers.js";

const ROUTES = [
  { pattern: /^#\/jobs\/([0-9a-fA-F-]{8,64})$/, view: job, name: "jobs" },
  { pattern: /^#\/jobs(?:\?(.*))?$/, view: jobs, name: "jobs" },
  { pattern: /^#\/workers$/, view: workers, name: "workers" },
  { pattern: /^#\/queues$/, view: queues, name: "queues", admin: true },
  { pattern: /^#\/schedules$/, view: schedules, name: "schedules" },
  { pattern: /^#\/analytics$/, view: analytics, name: "analytics" },
];

const main = document.getElementById("main");
let unmount = null;

function renderChrome() {
  const session = api.current();
  const nav = document.getElementById("nav");
  const box = document.getElementById("session");
  nav.hidden = !session;
  box.hidden = !session;
  for (const item of nav.querySelectorAll("[data-admin]")) item.hidden = !api.isAdmin();
  if (session) {
    const role = api.isAdmin() ? "admin" : "user"; // what this credential may do
    const via = session.method === "key" ? ", API key" : "";
    document.getElementById("who").textContent = `${session.user?.username} (${role}${via})`;
  }
}

function highlight(name) {
  for (const link of document.querySelectorAll("#nav a[data-view]")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function loginView() {
  const reason = api.takeLogoutReason();
  const error = h("p.notice.error", { role: "alert", hidden: !reason, text: reason || "" });
  const username = h("input", {
    id: "login-username",
    name: "username",
    autocomplete: "username",
    required: true,
  });
  const password = h("input", {
    id: "login-password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const submit = h("button.button", { type: "submit", text: "Log in" });
  const form = h(
    "form.card.login",
    { "aria-labelledby": "login-title" },
    h("h1", { id: "login-title", text: "Log in to Jobgate" }),
    error,
    h("div.field", {}, h("label", { for: "login-username", text: "Username" }), username),
    h("div.field", {}, h("label", { for: "login-password", text: "Password" }), password),
    submit,
  );
  const fail = (exc) => {
    error.textContent = exc.describe ? exc.describe() : String(exc);
    error.hidden = false;
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    try {
      await api.login(username.value, password.value);
    } catch (exc) {
      fail(exc);
      password.select();
    } finally {
      submit.disabled = false;
    }
  });

  const keyInput = h("input", {
    id: "login-key",
    name: "api_key",
    type: "password",
    autocomplete: "off",
    required: true,
  });
  const keyForm = h(
    "form.key-login",
    {},
    h("div.field", {}, h("label", { for: "login-key", text: "API key" }), keyInput),
    h("button.button.secondary", { type: "submit", text: "Use this key" }),
  );
  keyForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api.loginWithKey(keyInput.value.trim());
    } catch (exc) {
      fail(exc);
    }
  });
  const keyBox = h(
    "details.card.login",
    {},
    h("summary", { text: "Log in with an API key instead" }),
    keyForm,
  );
  fill(main, h("div.login-wrap", {}, form, keyBox));
  username.focus();
}

function route() {
  if (unmount) {
    try {
      unmount();
    } catch (exc) {
      console.error(exc);
    }
    unmount = null;
  }
  renderChrome();
  if (!api.current()) {
    highlight(null);
    loginView();
    return;
  }
  const hash = window.location.hash || "#/jobs";
  const found = ROUTES.find((r) => r.pattern.test(hash));
  if (!found || (found.admin && !api.isAdmin())) {
    highlight(null);
    fill(
      main,
      h("h1", { text: "Not found" }),
      h("p", {}, "Nothing here. ", h("a", { href: "#/jobs", text: "Back to the jobs" })),
    );
    return;
  }
  highlight(found.name);
  const match = hash.match(found.pattern);
  main.replaceChildren();
  unmount = found.view.mount(main, match.slice(1)) || null;
}

function focusMain() {
  // After a navigation, keyboard and screen-reader users start at the new view's content.
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

window.addEventListener("hashchange", () => {
  route();
  focusMain();
});

let loggedIn = Boolean(api.current());
api.onSession((session) => {
  if (Boolean(session) === loggedIn) return; // a refreshed token: nothing to redraw
  loggedIn = Boolean(session);
  if (session) {
    announce(`Logged in as ${session.user?.username}`);
    if (!window.location.hash || window.location.hash === "#/login") {
      window.location.hash = "#/jobs"; // hashchange routes
      return;
    }
  }
  route();
  if (session) focusMain();
});

document.getElementById("logout").addEventListener("click", () => {
  api.logout();
  announce("Logged out");
});

route();
