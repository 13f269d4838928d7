// The console's pages: each loads what it shows from control's API and renders it; the shell
// (console.js) loads it again every two seconds.

import { get, post, segment } from "./api.js";
import { ago, badge, h, labels, link, section, table } from "./dom.js";

const HEALTH_TONES = { healthy: "ok", waiting: "wait", failed: "bad", offline: "bad" };
const WARNING = /fail|exit|crash|restart|reject|replac|unavailable|error|backoff/;

function siteHealth(site) {
  if (site.state !== "enrolled") return badge(site.state, site.state === "revoked" ? "bad" : "wait");
  if (site.in_sync) return badge("in sync", "ok");
  const applied = site.applied_revision === null ? "none" : site.applied_revision;
  return badge(`applying (revision ${applied} of ${site.revision})`, "wait");
}

function siteLink(site) {
  return site.connected ? badge("connected", "ok") : badge("offline", "bad");
}

export function sites() {
  return {
    title: "Sites",
    load: () => get("/v1/sites"),
    render: (data) =>
      table(
        "Sites",
        ["Site", "Labels", "Tenants", "Link", "Health", "Last seen"],
        data.sites.map((s) => [
          link(`#/site/${segment(s.name)}`, s.name),
          labels(s.labels),
          s.tenants.join(", "),
          siteLink(s),
          siteHealth(s),
          ago(s.last_contact),
        ]),
        "No sites are enrolled (or none is assigned to this token's tenant).",
      ),
  };
}

function instanceRows(instances) {
  return instances.map((i) => [
    i.id,
    i.app,
    i.version,
    i.service,
    i.host,
    badge(i.state, i.state === "running" ? "ok" : "wait"),
    i.ready ? "yes" : "no",
    String(i.restarts),
    i.reason || "",
  ]);
}

// Events as GET /v1/events gives them (oldest first): newest first here.
function eventRows(events) {
  return events
    .slice()
    .reverse()
    .map((e) => {
      const kind = String(e.kind || "");
      return [ago(e.time || e.received), badge(kind, WARNING.test(kind) ? "bad" : ""),
        e.instance || e.app || "", String(e.message || "")];
    });
}

// Fetching an instance's latest lines from the site, on demand (the site answers through its
// long-poll): a form kept across the page's refreshes, with the lines below it.
function logsPanel(name) {
  const instance = h("input", { id: "log-instance", type: "text", list: "site-instances",
    autocomplete: "off", placeholder: "app.service.0", required: true });
  const tail = h("input", { id: "log-tail", type: "number", min: "1", max: "10000", value: "100" });
  const notice = h("p", { class: "notice", id: "log-notice", role: "status", "aria-live": "polite" });
  const lines = h("pre", { id: "log-lines", class: "logs", hidden: true, tabindex: "0",
    "aria-label": "Log lines, oldest first" });
  const button = h("button", { type: "submit", id: "fetch-logs" }, "Fetch logs");
  const fetchLogs = async (event) => {
    event.preventDefault();
    const id = instance.value.trim();
    if (!id) {
      notice.textContent = "Enter an instance (such as app.service.0).";
      return;
    }
    button.disabled = true;
    notice.textContent = `Asking ${name} for the logs of ${id}…`;
    try {
      const query = `instance=${encodeURIComponent(id)}&tail=${encodeURIComponent(tail.value || "100")}`;
      const answer = await get(`/v1/sites/${segment(name)}/logs?${query}`);
      lines.replaceChildren(...answer.lines.map((l) =>
        h("span", { class: l.stream === "stderr" ? "stderr" : "" }, `${l.line}\n`)));
      lines.hidden = false;
      notice.textContent =
        `${answer.lines.length} line${answer.lines.length === 1 ? "" : "s"} of ${id} from ${name}, ` +
        new Date().toLocaleTimeString();
    } catch (e) {
      notice.textContent = `Logs not fetched: ${e.describe ? e.describe() : e.message}`;
    } finally {
      button.disabled = false;
    }
  };
  return section(
    "Recent logs",
    h("form", { class: "actions", id: "logs-form", onsubmit: fetchLogs, "aria-label": "Fetch logs" },
      h("label", { for: "log-instance" }, "Instance"), instance,
      h("label", { for: "log-tail" }, "Lines"), tail,
      button, notice),
    lines,
  );
}

export function site(name) {
  const base = `/v1/sites/${segment(name)}`;
  return {
    title: `Site ${name}`,
    after: () => logsPanel(name),
    load: async () => {
      const [detail, events] = await Promise.all([
        get(base), get(`/v1/events?site=${segment(name)}&limit=50`)]);
      return { detail, events: events.events };
    },
    render: ({ detail, events }) => {
      const status = detail.status || {};
      return h(
        "div",
        {},
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Labels"), h("dd", {}, labels(detail.labels)),
          h("dt", {}, "Link"), h("dd", {}, siteLink(detail)),
          h("dt", {}, "Health"), h("dd", {}, siteHealth(detail)),
          h("dt", {}, "Last seen"), h("dd", {}, ago(detail.last_contact)),
          h("dt", {}, "Tenants"), h("dd", {}, detail.tenants.join(", ") || "none"),
        ),
        section(
          "Instances",
          table(
            `Instances at ${name} (as last reported)`,
            ["Instance", "Application", "Version", "Service", "Host", "State", "Ready",
              "Restarts", "Reason"],
            instanceRows(status.instances || []),
            detail.status ? "No instances run here." : "The site has not reported its status yet.",
          ),
        ),
        section(
          "Desired applications",
          table(
            `Applications control wants at ${name}`,
            ["Application", "Version", "Tenant"],
            (detail.desired || []).map((a) => [a.name, a.version, a.tenant || ""]),
            "Control wants no applications here.",
          ),
        ),
        section(
          "Events",
          table(`Latest events from ${name}, newest first`, ["When", "Kind", "Instance", "Message"],
            eventRows(events), "No events from this site yet."),
        ),
        h("datalist", { id: "site-instances" },
          (status.instances || []).map((i) => h("option", { value: i.id }))),
      );
    },
  };
}

export function applications() {
  return {
    title: "Applications",
    load: () => get("/v1/applications"),
    render: (data) =>
      table(
        "Applications and their versions",
        ["Application", "Tenant", "Latest", "Versions"],
        data.applications.map((a) => [a.name, a.tenant, a.latest, a.versions.join(", ")]),
        "No applications have been pushed (edge-control app push).",
      ),
  };
}

function progress(status) {
  const total = status.sites.length;
  const healthy = status.sites.filter(
    (s) => s.version === status.target && s.health === "healthy",
  ).length;
  return h(
    "span",
    { class: "progress" },
    h("progress", { max: total || 1, value: healthy, "aria-label": `${status.name} rollout` }),
    ` ${healthy} of ${total} sites healthy on ${status.target || "-"}`,
  );
}

function phase(value) {
  const tone = { done: "ok", paused: "wait", "rolled-back": "bad" }[value] || "wait";
  return badge(value, tone);
}

export function deployments() {
  return {
    title: "Deployments",
    load: async () => {
      const list = await get("/v1/deployments");
      return Promise.all(
        list.deployments.map((d) => get(`/v1/deployments/${segment(d.name)}/status`)),
      );
    },
    render: (statuses) =>
      table(
        "Deployments and their rollouts",
        ["Deployment", "Application", "Target", "Phase", "Progress", "Message"],
        statuses.map((d) => [
          link(`#/deployment/${segment(d.name)}`, d.name),
          d.spec.application,
          d.target || "-",
          phase(d.phase),
          progress(d),
          d.message,
        ]),
        "No deployments (edge-control deployment apply).",
      ),
  };
}

function actions(name, after) {
  const reason = h("input", { id: "reason", type: "text", maxlength: "200", autocomplete: "off" });
  const notice = h("p", { class: "notice", role: "status", "aria-live": "polite" });
  const act = (verb, done) => async (event) => {
    const buttons = event.target.closest(".actions").querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    notice.textContent = `${verb}…`;
    try {
      const body = reason.value.trim() ? { reason: reason.value.trim() } : {};
      const answer = await post(`/v1/deployments/${segment(name)}/${verb.toLowerCase()}`, body);
      notice.textContent = `${done}: ${answer.phase}, ${answer.message}`;
      reason.value = "";
      after();
    } catch (e) {
      notice.textContent = `${verb} refused: ${e.describe ? e.describe() : e.message}`;
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  };
  return h(
    "div",
    { class: "actions", role: "group", "aria-label": "Rollout actions" },
    h("label", { for: "reason" }, "Reason (optional)"),
    reason,
    h("button", { type: "button", id: "pause", onclick: act("Pause", "Paused") }, "Pause"),
    h("button", { type: "button", id: "resume", onclick: act("Resume", "Resumed") }, "Resume"),
    h("button", { type: "button", id: "rollback", class: "danger",
      onclick: act("Rollback", "Rolling back") }, "Rollback"),
    notice,
  );
}

export function deployment(name) {
  return {
    title: `Deployment ${name}`,
    actions: (after) => actions(name, after),
    load: () => get(`/v1/deployments/${segment(name)}/status`),
    render: (d) =>
      h(
        "div",
        {},
        h(
          "dl",
          { class: "facts" },
          h("dt", {}, "Application"), h("dd", {}, d.spec.application),
          h("dt", {}, "Target"), h("dd", {}, d.target || "-"),
          h("dt", {}, "Phase"), h("dd", { id: "phase" }, phase(d.phase)),
          h("dt", {}, "Since"), h("dd", {}, ago(d.since)),
          h("dt", {}, "Progress"), h("dd", {}, progress(d)),
          h("dt", {}, "Message"), h("dd", {}, d.message),
        ),
        section(
          "Sites",
          table(
            `Sites of ${name}`,
            ["Site", "Version", "Health", "Since", "Instances ready", "Link", "Failure"],
            d.sites.map((s) => [
              link(`#/site/${segment(s.site)}`, s.site),
              s.version || "-",
              badge(s.health, HEALTH_TONES[s.health]),
              ago(s.since),
              `${s.ready} of ${s.instances}`,
              s.connected ? badge("connected", "ok") : badge("offline", "bad"),
              s.failed || "",
            ]),
            "No site matches this deployment's placement.",
          ),
        ),
        section(
          "History",
          table(
            `Earlier rollouts of ${name}`,
            ["Target", "Phase", "Started", "Ended", "Sites moved", "Message"],
            d.history.slice().reverse().map((r) => [
              r.target, phase(r.phase), ago(r.started), ago(r.ended), String(r.sites), r.message,
            ]),
            "No earlier rollouts.",
          ),
        ),
      ),
  };
}
