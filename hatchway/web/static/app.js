// The console page: sign-in, the node list, and one terminal tab per session.

import { Api, ApiError } from "./api.js";
import { TerminalTab } from "./terminal.js";

const api = new Api();
const $ = (selector) => document.querySelector(selector);
const tabs = new Map(); // tab id -> TerminalTab
let nodes = [];
let nextTab = 1;
let refresher = null;
const REFRESH_MS = 30_000; // the node list follows status changes while it is shown

// For the browser tests and for people poking at the console from devtools.
window.hatchway = { api, tabs };

function show(view) {
  $("#sign-in-view").hidden = view !== "sign-in";
  $("#console-view").hidden = view !== "console";
  $("#sign-out").hidden = view !== "console";
  $("#who").hidden = view !== "console";
}

// --- sign-in -------------------------------------------------------------------------

function signInMethod(method) {
  for (const button of document.querySelectorAll("#sign-in [role=tab]")) {
    button.setAttribute("aria-selected", String(button.dataset.method === method));
  }
  for (const fieldset of document.querySelectorAll("#sign-in fieldset")) {
    fieldset.hidden = fieldset.dataset.method !== method;
  }
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  const method = form.querySelector("[role=tab][aria-selected=true]").dataset.method;
  const data = new FormData(form);
  const fields =
    method === "key"
      ? { accessKeyId: data.get("accessKeyId").trim(), secretAccessKey: data.get("secretAccessKey") }
      : { userName: data.get("userName").trim(), password: data.get("password") };
  $("#sign-in-error").textContent = "";
  try {
    const me = await api.signIn(fields);
    form.reset();
    await enter(me);
  } catch (error) {
    $("#sign-in-error").textContent = error.reason || error.message;
  }
}

async function enter(me) {
  $("#who").textContent = me.userName;
  if (me.region) $("#where").textContent = me.region;
  show("console");
  clearInterval(refresher);
  refresher = setInterval(() => {
    if (!$("[data-pane=nodes]").hidden && !document.hidden) loadNodes();
  }, REFRESH_MS);
  await Promise.all([loadNodes(), loadDocuments()]);
}

// Shell documents the user may pick instead of the default: the account's own Session
// documents (port, SSH and command documents need parameters a terminal does not give).
async function loadDocuments() {
  const select = $("#session-document");
  let documents = [];
  try {
    const listed = await api.call("AmazonSSM.ListDocuments", {
      Filters: [{ Key: "DocumentType", Values: ["Session"] }, { Key: "Owner", Values: ["Self"] }],
      MaxResults: 50,
    });
    documents = listed.DocumentIdentifiers.map((d) => d.Name);
  } catch {
    // Without ssm:ListDocuments the default document is still there.
  }
  select.replaceChildren(select.options[0]);
  for (const name of documents) select.add(new Option(name, name));
}

async function signOut() {
  clearInterval(refresher);
  for (const tab of tabs.values()) tab.close();
  tabs.clear();
  for (const element of document.querySelectorAll("[data-tab]:not([data-tab=nodes])")) {
    element.remove();
  }
  for (const element of document.querySelectorAll(".pane.terminal")) element.remove();
  try {
    await api.signOut();
  } catch {
    // Signed out already (an expired session): the sign-in form is the right place anyway.
  }
  selectTab("nodes");
  show("sign-in");
}

// --- the node list -----------------------------------------------------------------------

async function loadNodes() {
  $("#nodes-error").textContent = "";
  try {
    nodes = (await api.nodes()).Nodes;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      clearInterval(refresher);
      return show("sign-in");
    }
    $("#nodes-error").textContent = error.message;
    nodes = [];
  }
  renderNodes();
}

function searchable(node) {
  const tags = Object.entries(node.Tags || {}).map(([k, v]) => `${k}=${v}`);
  return [node.InstanceId, node.Name, node.ComputerName, node.IPAddress, node.PlatformName,
    node.PlatformType, node.PingStatus, ...tags].join(" ").toLowerCase();
}

function ago(epochSeconds) {
  if (!epochSeconds) return "never";
  const seconds = Math.max(0, Math.round(Date.now() / 1000 - epochSeconds));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return new Date(epochSeconds * 1000).toLocaleString();
}

// ``label`` names the cell where the table's header is not shown (a narrow screen).
function cell(row, text, className, label) {
  const td = row.insertCell();
  if (className) td.className = className;
  if (label) td.dataset.label = label;
  if (text !== undefined) td.textContent = text;
  return td;
}

function renderNodes() {
  const query = $("#node-search").value.trim().toLowerCase();
  const words = query.split(/\s+/).filter(Boolean);
  const shown = nodes.filter((node) => words.every((word) => searchable(node).includes(word)));
  const body = $("#node-rows");
  body.replaceChildren();
  for (const node of shown) {
    const row = body.insertRow();
    row.dataset.instanceId = node.InstanceId;
    const id = cell(row, undefined, "id");
    id.append(node.ComputerName || node.Name || node.InstanceId);
    const small = document.createElement("small");
    small.textContent = node.InstanceId;
    id.append(small);
    const status = document.createElement("span");
    status.className = `status ${node.PingStatus}`;
    status.textContent = node.PingStatus;
    cell(row).append(status);
    const platform = [node.PlatformName, node.PlatformVersion].filter(Boolean).join(" ");
    cell(row, platform || node.PlatformType, undefined, "Platform");
    cell(row, node.IPAddress || "", undefined, "IP address");
    cell(row, ago(node.LastPingDateTime), undefined, "Last ping");
    const tagCell = cell(row, undefined, "tags", "Tags");
    for (const [key, value] of Object.entries(node.Tags || {})) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = `${key}=${value}`;
      tagCell.append(tag);
    }
    const connect = document.createElement("button");
    connect.type = "button";
    connect.className = "primary connect";
    connect.textContent = "Connect";
    connect.disabled = node.PingStatus !== "Online";
    connect.title = connect.disabled ? "The node is not connected." : `Open a shell on ${node.InstanceId}`;
    connect.addEventListener("click", () => openTerminal(node));
    cell(row, undefined, "actions").append(connect);
  }
  if (!shown.length) {
    const row = body.insertRow();
    const td = cell(row, nodes.length ? "No node matches the search." : "No managed nodes yet.", "empty");
    td.colSpan = 7;
  }
  $("#node-count").textContent = `${shown.length} of ${nodes.length}`;
}

// --- tabs ---------------------------------------------------------------------------------

function selectTab(id) {
  for (const button of document.querySelectorAll("#tabs [data-tab]")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === id));
  }
  for (const pane of document.querySelectorAll("[data-pane]")) {
    pane.hidden = pane.dataset.pane !== id;
  }
  tabs.get(id)?.focus();
}

function openTerminal(node) {
  const id = `t${nextTab++}`;
  const button = document.createElement("button");
  button.type = "button";
  button.role = "tab";
  button.className = "tab";
  button.dataset.tab = id;
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = node.ComputerName || node.InstanceId;
  const close = document.createElement("span");
  close.className = "close";
  close.textContent = "×";
  close.title = "Close this session";
  button.append(label, close);
  $("#tabs").append(button);
  const pane = document.createElement("section");
  pane.className = "pane terminal";
  pane.dataset.pane = id;
  $("#console-view").append(pane);
  button.addEventListener("click", (event) => {
    if (event.target === close) closeTab(id);
    else selectTab(id);
  });
  const sessionDocument = $("#session-document").value || undefined;
  const tab = new TerminalTab({
    api,
    target: node.InstanceId,
    document: sessionDocument,
    element: pane,
  });
  tab.onEnd = () => button.classList.add("ended");
  tab.onSessionId = (sessionId) => (button.title = sessionId);
  tabs.set(id, tab);
  selectTab(id);
  tab.start();
}

function closeTab(id) {
  tabs.get(id)?.close();
  tabs.delete(id);
  document.querySelector(`#tabs [data-tab="${id}"]`)?.remove();
  document.querySelector(`[data-pane="${id}"]`)?.remove();
  selectTab("nodes");
}

// --- start ----------------------------------------------------------------------------------

$("#sign-in").addEventListener("submit", signIn);
for (const button of document.querySelectorAll("#sign-in [role=tab]")) {
  button.addEventListener("click", () => signInMethod(button.dataset.method));
}
$("#sign-out").addEventListener("click", signOut);
$("#node-search").addEventListener("input", renderNodes);
$("#refresh").addEventListener("click", loadNodes);
$("#tabs [data-tab=nodes]").addEventListener("click", () => selectTab("nodes"));

api.me().then(enter, () => show("sign-in"));
