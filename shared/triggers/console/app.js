// The admin console: plain JavaScript over the public API. Every value is set with textContent
// (never innerHTML), so whatever a description or an alert holds is shown as text.
"use strict";

const key = new URLSearchParams(location.search).get("code");
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MOVING = new Set(["enumerating", "running", "cancelling"]);
let roles = null; // null: unknown (no App Service Authentication): offer everything, the API decides
let nextLink = null;
let jobTimer = null;

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function apiUrl(path, params) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(params || {})) if (value) url.searchParams.set(name, value);
  return url;
}

async function api(url, options) {
  const headers = { accept: "application/json", ...(options && options.headers) };
  if (key) headers["x-functions-key"] = key;
  const response = await fetch(url, { ...options, headers, credentials: "same-origin" });
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const detail = body ? `${body.title || response.status}: ${body.detail || ""}` : `HTTP ${response.status}`;
    throw new Error(detail);
  }
  return { body, response };
}

function showError(error) {
  $("error").textContent = error ? String(error.message || error) : "";
  $("error").hidden = !error;
}

function can(role) {
  return roles === null || roles.has(role);
}

// --- remediation log ----------------------------------------------------------------------------
function logParams() {
  const q = $("q").value.trim();
  const params = { status: $("status").value, top: "50" };
  if (q) params[q.includes("@") || GUID.test(q) ? "user" : "correlationId"] = q;
  for (const name of ["since", "until"]) {
    if ($(name).value) params[name] = new Date($(name).value).toISOString();
  }
  return params;
}

async function loadLog(append) {
  showError(null);
  const params = logParams();
  const url = append && nextLink ? new URL(nextLink) : apiUrl("/api/signouts", params);
  const csv = apiUrl("/api/signouts", { ...params, format: "csv", code: key });
  $("csv").href = csv.pathname + csv.search;
  try {
    const { body } = await api(url);
    const rows = $("tasks").tBodies[0];
    if (!append) rows.replaceChildren();
    for (const task of body.tasks) rows.append(taskRow(task));
    nextLink = body.nextLink || null;
    $("more").hidden = !nextLink;
  } catch (error) {
    showError(error);
  }
}

function taskRow(task) {
  const row = el("tr");
  row.dataset.id = task.id;
  const user = task.resolvedUser?.userPrincipalName || task.user;
  const by = task.requestedBy ? task.requestedBy.displayName || task.requestedBy.objectId || task.requestedBy.appId : "function key";
  row.append(
    el("td", new Date(task.createdAt).toLocaleString()),
    el("td", user),
    el("td", task.status, `status-${task.status}`),
    el("td", task.source),
    el("td", by),
    el("td", task.description),
  );
  row.addEventListener("click", () => { location.hash = `#task/${task.id}`; });
  return row;
}

async function signOut(event) {
  event.preventDefault();
  const user = $("signout-user").value.trim();
  if (!user || !confirm(`Sign ${user} out of every session now?`)) return;
  try {
    const body = JSON.stringify({ users: [user], description: $("signout-reason").value });
    const { body: created } = await api("/api/signouts", { method: "POST", body, headers: { "content-type": "application/json" } });
    location.hash = `#task/${created.tasks[0].id}`;
  } catch (error) {
    showError(error);
  }
}

// --- task detail --------------------------------------------------------------------------------
async function loadTask(id) {
  showError(null);
  try {
    const { body: task, response } = await api(apiUrl(`/api/signouts/${encodeURIComponent(id)}`));
    renderTask(task);
    if (response.status === 202 && location.hash === `#task/${id}`) {
      const seconds = Number(response.headers.get("retry-after")) || 1;
      setTimeout(() => { if (location.hash === `#task/${id}`) loadTask(id); }, seconds * 1000);
    }
  } catch (error) {
    showError(error);
  }
}

function renderTask(task) {
  $("task-title").textContent = `${task.resolvedUser?.userPrincipalName || task.user}: `;
  $("task-title").append(el("span", task.status, `status-${task.status}`));
  $("task-title").dataset.status = task.status;
  const by = task.requestedBy || {};
  const fields = [
    ["Task", task.id], ["User", task.user], ["Object id", task.resolvedUser?.id], ["User type", task.resolvedUser?.userType],
    ["Requested by", [by.displayName, by.objectId || by.appId].filter(Boolean).join(" ") || "function key"],
    ["Reason", task.description], ["Source", task.source], ["Alert", task.alertId], ["Job", task.jobId],
    ["Correlation id", task.correlationId], ["Graph request id", task.graphRequestId],
    ["Verified", task.verified === null ? null : task.verified ? "yes" : "no"],
    ["Sessions valid from", task.sessionsValidFrom], ["Warnings", (task.warnings || []).join("; ")],
    ["Error", task.error ? `${task.error.category}: ${task.error.message || ""} ${task.error.code || ""}` : null],
    ["Joined requests", task.joinedCount || null],
  ];
  const list = $("task-fields");
  list.replaceChildren();
  for (const [name, value] of fields) {
    if (value === null || value === undefined || value === "") continue;
    list.append(el("dt", name), el("dd", value));
  }
  const fix = task.error?.hint || (task.error ? fixFor(task.error.category) : null);
  $("task-fix").hidden = !fix;
  $("task-fix-text").textContent = fix || "";
  const timeline = [
    [task.createdAt, "created (queued)"],
    [task.attempts ? task.updatedAt : null, `${task.attempts} attempt(s)`],
    [task.nextAttemptAt, "next attempt"],
    [task.completedAt, task.status],
  ].filter(([when]) => when).sort(([a], [b]) => a.localeCompare(b));
  $("task-timeline").replaceChildren(...timeline.map(([when, what]) => el("li", `${new Date(when).toLocaleString()}: ${what}`)));
}

function fixFor(category) {
  return {
    user_not_found: "Check the UPN or object id: Microsoft Graph does not know this user.",
    protected_account: "The account is in PROTECTED_USERS (break-glass): sign it out by hand if you really must.",
    gave_up: "Microsoft Graph kept failing for the whole retry budget: check /api/health, then sign the user out again.",
    invalid_request: "Microsoft Graph refused the request: see the error message and the Graph request id.",
    cancelled: "Its bulk job was cancelled before this user's turn: sign the user out on their own if still needed.",
  }[category] || null;
}

// --- jobs ---------------------------------------------------------------------------------------
async function loadJobs() {
  showError(null);
  clearTimeout(jobTimer);
  try {
    const { body } = await api(apiUrl("/api/jobs", { top: "50" }));
    $("jobs").replaceChildren(...body.jobs.map(jobItem));
    const moving = body.jobs.find((job) => MOVING.has(job.state));
    if (moving) pollJob(moving.id);
  } catch (error) {
    showError(error);
  }
}

async function pollJob(id) {
  // The job's own status URL says when to ask again (Retry-After) while it runs.
  const { body: job, response } = await api(apiUrl(`/api/jobs/${id}`));
  const item = document.querySelector(`#jobs li[data-id="${CSS.escape(id)}"]`);
  if (item) item.replaceWith(jobItem(job));
  if (location.hash !== "#jobs") return;
  const seconds = response.status === 202 ? Number(response.headers.get("retry-after")) || 10 : 0;
  jobTimer = setTimeout(seconds ? () => pollJob(id) : loadJobs, (seconds || 1) * 1000);
}

function jobItem(job) {
  const item = el("li");
  item.dataset.id = job.id;
  item.dataset.state = job.state;
  const target = job.target.group ? `group ${job.target.group}` : "all users";
  item.append(el("strong", `${job.description || "bulk sign-out"} — ${target}`), el("div", job.state, "state"));
  const bar = el("progress");
  bar.max = 100;
  bar.value = job.percent || 0;
  bar.setAttribute("aria-label", `${job.percent || 0}%`);
  item.append(bar, el("div", `${job.done ?? 0} of ${job.total ?? 0} (${job.percent ?? 0}%)`, "counts"));
  if (job.estimatedFinish) item.append(el("div", `estimated finish ${new Date(job.estimatedFinish).toLocaleString()}`));
  if (job.counts?.failed) item.append(el("div", `${job.counts.failed} failed`, "status-failed"));
  if (can("SignOuts.Create") && (MOVING.has(job.state) || job.state === "awaiting_approval") && job.state !== "cancelling") {
    const cancel = el("button", "Cancel");
    cancel.type = "button";
    cancel.addEventListener("click", () => cancelJob(job));
    item.append(cancel);
  }
  return item;
}

async function cancelJob(job) {
  const count = job.total || job.count || job.counts.discovered;
  if (!confirm(`Cancel this job signing out ${count} users? Tasks not yet started are skipped.`)) return;
  try {
    await api(apiUrl(`/api/jobs/${job.id}/cancel`), { method: "POST" });
    loadJobs();
  } catch (error) {
    showError(error);
  }
}

// --- health -------------------------------------------------------------------------------------
async function loadHealth() {
  showError(null);
  const response = await fetch("/api/health");
  const report = await response.json();
  $("health-status").textContent = report.status;
  $("health").replaceChildren(tree(report.checks));
}

function tree(value) {
  if (value === null || typeof value !== "object") return el("span", value);
  const list = el("dl");
  for (const [name, item] of Object.entries(value)) list.append(el("dt", name), ddOf(item));
  return list;
}

function ddOf(item) {
  const dd = el("dd");
  dd.append(Array.isArray(item) ? el("span", item.join(", ")) : tree(item));
  return dd;
}

// --- navigation ---------------------------------------------------------------------------------
async function loadRoles() {
  try {
    const response = await fetch("/.auth/me", { credentials: "same-origin" });
    if (!response.ok) return;
    const [me] = await response.json();
    const claims = me?.user_claims || [];
    roles = new Set(claims.filter((claim) => claim.typ === "roles").map((claim) => claim.val));
    const name = claims.find((claim) => claim.typ === "name");
    $("who").textContent = `${name ? name.val : me.user_id} (${[...roles].join(", ") || "no app role"})`;
  } catch {
    roles = null;
  }
}

function route() {
  clearTimeout(jobTimer);
  const [view, id] = (location.hash || "#log").slice(1).split("/");
  for (const name of ["log", "task", "jobs", "health"]) $(`view-${name}`).hidden = name !== view;
  for (const form of document.querySelectorAll("[data-role]")) form.hidden = !can(form.dataset.role);
  if (view === "task") loadTask(id);
  else if (view === "jobs") loadJobs();
  else if (view === "health") loadHealth().catch(showError);
  else if (!$("tasks").tBodies[0].rows.length) loadLog(false);
}

document.addEventListener("DOMContentLoaded", async () => {
  $("search").addEventListener("submit", (event) => { event.preventDefault(); loadLog(false); });
  $("more").addEventListener("click", () => loadLog(true));
  $("signout").addEventListener("submit", signOut);
  window.addEventListener("hashchange", route);
  await loadRoles();
  if (!location.hash) history.replaceState(null, "", `${location.pathname}${location.search}#log`);
  route();
});
