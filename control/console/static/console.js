// The console's shell: sign-in, the page named by the URL's fragment (#/sites, #/site/NAME,
// #/applications, #/deployments, #/deployment/NAME), and a refresh every two seconds.

import { ApiError, get, token } from "./api.js";
import { h } from "./dom.js";
import * as pages from "./pages.js";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);

let current = null; // the page shown: { page, data, actions, generation, loading, again }
let generation = 0;
let timer = null;

function showMessage(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
}

function route() {
  const parts = (location.hash.replace(/^#\/?/, "") || "sites").split("/");
  const name = parts.slice(1).map(decodeURIComponent).join("/");
  switch (parts[0]) {
    case "site": return { key: "sites", page: pages.site(name) };
    case "applications": return { key: "applications", page: pages.applications() };
    case "deployments": return { key: "deployments", page: pages.deployments() };
    case "deployment": return { key: "deployments", page: pages.deployment(name) };
    default: return { key: "sites", page: pages.sites() };
  }
}

function signedOut(text) {
  token.clear();
  clearTimeout(timer);
  current = null;
  $("page").replaceChildren();
  $("nav").hidden = true;
  $("signout").hidden = true;
  $("live").textContent = "";
  $("signin").hidden = false;
  showMessage(text || "");
  $("token").focus();
}

// A refresh must not throw a keyboard user out of the table: the link that had the focus
// (same address) has it again afterwards.
function replaceKeepingFocus(box, content) {
  const focused = document.activeElement;
  const href = focused && box.contains(focused) ? focused.getAttribute("href") : null;
  box.replaceChildren(content);
  if (href) {
    const again = [...box.querySelectorAll("a")].find((a) => a.getAttribute("href") === href);
    if (again) again.focus({ preventScroll: true });
  }
}

// One load at a time per page: asked again meanwhile (an action's answer), it loads once more
// right after; otherwise the next load is POLL_MS after this one ended.
async function refresh(mine) {
  const view = current;
  if (!view || mine !== view.generation) return;
  if (view.loading) {
    view.again = true;
    return;
  }
  view.loading = true;
  clearTimeout(timer);
  try {
    const data = await view.page.load();
    if (view !== current) return;
    replaceKeepingFocus(view.data, view.page.render(data));
    view.data.setAttribute("aria-busy", "false");
    if (view.actions) view.actions.hidden = false; // shown once there is something to act on
    $("live").textContent = `updated ${new Date().toLocaleTimeString()}`;
    showMessage("");
  } catch (e) {
    if (view !== current) return;
    if (e instanceof ApiError && e.status === 401) {
      signedOut(`Signed out: ${e.describe()}`);
      return;
    }
    const text = e instanceof ApiError ? e.describe() : `The console failed: ${e.message}`;
    showMessage(text);
    $("live").textContent = `not updated ${new Date().toLocaleTimeString()}`;
    if (view.data.getAttribute("aria-busy") === "true") {
      view.data.replaceChildren(h("p", { class: "empty" }, `Nothing to show: ${text}`));
    }
  } finally {
    view.loading = false;
  }
  if (view !== current) return;
  if (view.again) {
    view.again = false;
    refresh(mine);
  } else {
    timer = setTimeout(() => refresh(mine), POLL_MS);
  }
}

function show() {
  if (!token.get()) {
    signedOut("");
    return;
  }
  const { key, page } = route();
  generation += 1;
  const mine = generation;
  const data = h("div", { class: "data", "aria-busy": "true" }, h("p", { class: "muted" }, "Loading…"));
  const now = () => refresh(mine);
  const actions = page.actions ? page.actions(now) : null;
  if (actions) actions.hidden = true;
  const after = page.after ? page.after() : null; // below the data, kept across refreshes
  current = { page, data, actions, generation: mine, loading: false, again: false };
  $("signin").hidden = true;
  $("nav").hidden = false;
  $("signout").hidden = false;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.page === key) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${page.title} · Edgeward`;
  $("page").replaceChildren(
    h("h2", { id: "title" }, page.title),
    actions || "",
    data,
    after || "",
  );
  showMessage("");
  now();
}

async function signIn(event) {
  event.preventDefault();
  const value = $("token").value.trim();
  if (!value) {
    showMessage("Enter a token.");
    return;
  }
  token.set(value);
  try {
    await get("/v1/tenants"); // any token may list the tenants it sees: a check of the token
  } catch (e) {
    token.clear();
    showMessage(`Sign-in refused: ${e instanceof ApiError ? e.describe() : e.message}`);
    return;
  }
  $("token").value = "";
  if (!location.hash) history.replaceState(null, "", "#/sites");
  show();
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signedOut("Signed out."));
  window.addEventListener("hashchange", show);
  show();
});
