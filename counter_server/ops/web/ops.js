// The ops page: every substation and counter live, the billing gateway, and the controls.
// Signed in with an admin key kept in sessionStorage (this tab only) and sent as a header.
// The live link is the ops channel of /api/v1/live, opened with a one-time ticket because a
// browser cannot send an Authorization header with a WebSocket.
"use strict";

const KEY_NAME = "ops-key";
const HISTORY = 300;                 // points kept for the small charts (one a second)
const $ = (id) => document.getElementById(id);

const ops = {
  halls: new Map(), seq: null, overview: null, billing: null, intervalS: 5, lastHeard: 0,
  alerts: [], boards: {},          // the server's alerts; what the hall boards report of their voices
  failedCount: null, paySig: null, // the outbox's counts as last heard: when they move, payments moved
  series: { limit: [], inflight: [], outbox: [], waiting: [] },
};
let socket = null;
let retryMs = 1000;
let overviewTimer = null;

// -- talking to the server ---------------------------------------------------------------------

class ApiFailure extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error && body.error.code;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY_NAME) || ""}` };
  if (method !== "GET") headers["Idempotency-Key"] = `ops-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                   cache: "no-store", credentials: "omit" });
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    if (resp.status === 401) signOut("The key was refused (unknown or revoked).");
    throw new ApiFailure(resp.status, data);
  }
  return data;
}

function toast(text, ok = false) {
  const box = $("toast");
  box.textContent = text;
  box.className = "toast" + (ok ? " ok" : "");
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, ok ? 2500 : 6000);
}

async function act(button, work, done) {
  button.disabled = true;
  try {
    await work();
    if (done) toast(done, true);
  } catch (error) {
    toast(error.message);
  } finally {
    button.disabled = false;
  }
}

// -- signing in and out ------------------------------------------------------------------------

async function signIn(key) {
  sessionStorage.setItem(KEY_NAME, key);
  try {
    const me = await api("GET", "/api/v1/me");
    if (me.role !== "admin") {
      signOut(`This is a ${me.role} key; the ops page needs an admin key.`);
      return;
    }
  } catch (error) {
    if (!sessionStorage.getItem(KEY_NAME)) return;       // refused: signOut has said why
    signOut(`Cannot reach the server: ${error.message}`);
    return;
  }
  $("login").hidden = true;
  $("app").hidden = false;
  document.body.dataset.state = "connecting";
  refreshOverview();
  api("GET", "/api/v1/ops/billing").then((b) => showBilling(b.billing)).catch(() => {});
  api("GET", "/api/v1/ops/alerts").then((a) => showAlerts(a.alerts)).catch(() => {});
  clearInterval(overviewTimer);
  overviewTimer = setInterval(refreshOverview, 5000);
  connect();
  setUpSlots();
  setUpCashUp();              // (refreshOverview has asked for the payments to settle)
  setUpPlan();
  setUpHooks();
}

function signOut(reason) {
  sessionStorage.removeItem(KEY_NAME);
  clearInterval(overviewTimer);
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  ops.halls.clear();
  ops.seq = null;
  ops.alerts = [];
  ops.boards = {};
  ops.paySig = null;
  ops.failedCount = null;
  resetPayments();
  resetPlan();
  resetHooks();
  $("app").hidden = true;
  $("login").hidden = false;
  $("key").value = "";
  document.body.dataset.state = "signed-out";
  const error = $("login-error");
  error.hidden = !reason;
  error.textContent = reason || "";
}

// -- the live link -----------------------------------------------------------------------------

async function connect() {
  if (!sessionStorage.getItem(KEY_NAME)) return;
  let ticket;
  try {
    ticket = (await api("POST", "/api/v1/ops/live-ticket")).ticket;
  } catch (error) {
    setLink("offline");
    if (error.status === 401) return;
    retryLater();
    return;
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const since = ops.seq === null ? "" : `&since=${ops.seq}`;
  socket = new WebSocket(`${scheme}://${location.host}/ops/live?ticket=${encodeURIComponent(ticket)}${since}`);
  socket.onmessage = (event) => receive(JSON.parse(event.data));
  socket.onclose = () => { socket = null; setLink("offline"); retryLater(); };
}

function retryLater() {
  const wait = Math.min(15000, retryMs) * (0.5 + Math.random());
  retryMs = Math.min(15000, retryMs * 2);
  setTimeout(connect, wait);
}

function setLink(state) {
  if (document.body.dataset.state === "signed-out") return;
  document.body.dataset.state = state;
  $("link").textContent = state === "live" ? "live" : state === "offline" ? "OFFLINE" : "connecting";
  showStale();
}

// Offline, every figure on the page is as it was when the link was lost: the page dims them
// (CSS on body[data-state=offline]) and says since when, so nobody acts on them as if live.
function showStale() {
  const offline = document.body.dataset.state === "offline";
  $("stale").hidden = !offline;
  if (offline) {
    $("stale-since").textContent = ops.lastHeard
      ? `Everything below is stale: as it was at ${clockText(ops.lastHeard)}, `
        + `${ago(Date.now() - ops.lastHeard)} ago`
      : "Nothing has been received yet";
  }
}

function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 90 ? `${s} s` : `${Math.round(s / 60)} min`;
}

function receive(message) {
  ops.lastHeard = Date.now();
  if (message.type === "snapshot") {
    ops.seq = message.seq;
    ops.timezone = message.timezone;                       // the scenario's, not this browser's
    showClock();
    ops.halls = new Map(message.halls.map((h) => [h.substation, h]));
    refreshOverview();                                     // counts may have moved while away
    relabelPayments();                                     // counters by name, now they are known
  } else if (message.type === "delta") {
    if (ops.seq !== null && message.prev !== ops.seq) { socket.close(); return; }
    ops.seq = message.seq;
    ops.halls.set(message.substation, message.hall);
    count(message.events);
  } else if (message.type === "heartbeat") {
    ops.intervalS = message.interval_s;
  } else if (message.type === "billing") {
    showBilling(message.billing);
    sample();
  } else if (message.type === "alerts") {
    showAlerts(message.alerts);
  } else if (message.type === "boards") {
    ops.boards = message.boards || {};
    renderAlerts();
  } else {
    return;
  }
  retryMs = 1000;
  setLink("live");
  document.body.dataset.seq = String(ops.seq);
  if (message.type === "snapshot" || message.type === "delta") renderHalls();
}

function count(events) {
  const counters = ops.overview && ops.overview.counters;
  if (!counters) return;
  for (const event of events) {
    const entry = counters[event.counter];
    if (!entry) continue;
    if (event.kind === "completed") entry.served += 1;
    if (event.kind === "no_show") entry.no_shows += 1;
  }
}

async function refreshOverview() {
  try {
    ops.overview = await api("GET", "/api/v1/ops/overview");
    renderHalls();
  } catch (error) { /* the next refresh tries again */ }
  refreshSettle();              // the payments to settle and the cash-up follow the same cycle
  if (cashUp.loaded) cashUpIfMoved();
}

/** A moment as the halls' clocks read it (the scenario's time zone). */
function clockText(ms) {
  try {
    return new Date(ms).toLocaleTimeString("en-GB", { timeZone: ops.timezone });
  } catch (error) {
    return new Date(ms).toLocaleTimeString("en-GB");     // an unknown zone: the browser's own
  }
}

/** The halls' time, once the first snapshot has said their zone: never the browser's meanwhile. */
function showClock() {
  $("clock").textContent = ops.timezone ? clockText(Date.now()) : "--:--:--";
}

setInterval(() => {
  showClock();
  showStale();
  if (document.body.dataset.state === "live" && Date.now() - ops.lastHeard > ops.intervalS * 2500) {
    setLink("offline");
    if (socket) socket.close();
  }
}, 1000);

// -- drawing -----------------------------------------------------------------------------------

function minutes(seconds) {
  return Math.max(0, Math.round(seconds / 60));
}

function estimateText(estimate) {
  if (!estimate || estimate.p50_s === null) return "no counter open";
  const low = minutes(estimate.p50_s), high = Math.max(low, minutes(estimate.p90_s));
  return low === high ? `${low} min` : `${low}–${high} min`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderHalls() {
  const halls = [...ops.halls.values()].sort((a, b) => a.substation.localeCompare(b.substation));
  const focused = document.activeElement && document.activeElement.dataset.capFor;
  $("halls").replaceChildren(...halls.map(renderHall));
  renderAlerts();
  if (focused) {
    const input = document.querySelector(`[data-cap-for="${focused}"]`);
    if (input) input.focus();
  }
  renderKpis(halls);
}

function renderHall(hall) {
  const card = el("section", "hall");
  const overview = ops.overview && ops.overview.substations[hall.substation];
  card.dataset.substation = hall.substation;
  card.dataset.admission = hall.admission.enabled ? "on" : "off";

  const head = el("div", "hall-head");
  head.append(el("h2", "", hall.name), el("span", "sid", `${hall.substation} · ${hall.opens}–${hall.closes}`));
  const paid = ops.overview && ops.overview.payment_service;
  const main = hall.services.find((s) => s.id === paid) || hall.services[0];
  const wait = el("div", "hall-wait");
  const waiting = el("span", "big waiting", String(hall.waiting));
  const est = el("span", "est", main ? estimateText(main.estimate) : "–");
  const p90 = main && main.estimate ? main.estimate.p90_s : null;
  if (p90 !== null && p90 >= 1800) est.classList.add("long");
  else if (p90 !== null && p90 >= 900) est.classList.add("mid");
  est.title = main ? `p50–p90 wait for a ${main.name} token issued now` : "";
  wait.append(waiting, el("span", "k", "waiting"), el("span", "k", main ? main.name.toLowerCase() : ""), est);

  const meta = el("div", "hall-meta");
  const cap = hall.admission.daily_cap;
  const issued = el("span", "", "issued ");
  issued.append(el("b", "", cap ? `${hall.issued_today}/${cap}` : String(hall.issued_today)));
  const away = el("span", "", "turned away ");
  away.append(el("b", "away", overview ? String(overview.turned_away) : "–"));
  const served = el("span", "", "served ");
  const servedHere = ops.overview
    ? hall.counters.reduce((n, c) => n + ((ops.overview.counters[c.id] || {}).served || 0), 0) : null;
  served.append(el("b", "", servedHere === null ? "–" : String(servedHere)));
  meta.append(issued, served, away);

  const services = el("ul", "services");
  for (const service of hall.services) {
    if (service === main) continue;
    services.append(el("li", "", `${service.name}: ${service.waiting} waiting, ${estimateText(service.estimate)}`));
  }

  const counters = el("ol", "counters");
  for (const counter of hall.counters) counters.append(renderCounter(hall, counter));

  const controls = el("div", "controls");
  const admission = el("button", "adm", hall.admission.enabled ? "Admission ON" : "Admission OFF");
  admission.type = "button";
  admission.dataset.on = String(hall.admission.enabled);
  admission.dataset.action = "admission";
  admission.title = "Refuse tokens that cannot be served before closing";
  const switchAdmission = () => act(admission, () => api("PUT", `/api/v1/ops/substations/${hall.substation}/admission`,
    { admission: !hall.admission.enabled, daily_cap: hall.admission.daily_cap }),
    `${hall.name}: admission ${hall.admission.enabled ? "off" : "on"}`);
  admission.onclick = () => hall.admission.enabled
    ? confirmThen(`Switch admission off at ${hall.name}?`,
        "The door will then issue tokens even when they cannot be served before closing: "
        + "people may wait and be sent home at closing time.", "Switch admission off", switchAdmission)
    : switchAdmission();
  const capInput = el("input");
  capInput.type = "number";
  capInput.min = "1";
  capInput.placeholder = "none";
  capInput.value = cap ? String(cap) : "";
  capInput.dataset.capFor = hall.substation;
  capInput.setAttribute("aria-label", `Daily cap at ${hall.substation}`);
  const setCap = el("button", "", "Set cap");
  setCap.type = "button";
  setCap.dataset.action = "cap";
  setCap.onclick = () => {
    const raw = capInput.value.trim();
    const value = raw === "" ? null : Number(raw);
    if (value !== null && (!Number.isInteger(value) || value < 1)) { toast("The daily cap is a whole number, 1 or more (empty: no cap)."); return; }
    act(setCap, () => api("PUT", `/api/v1/ops/substations/${hall.substation}/admission`,
      { admission: hall.admission.enabled, daily_cap: value }),
      `${hall.substation}: daily cap ${value === null ? "removed" : value}`);
  };
  controls.append(admission, el("span", "", "cap"), capInput, setCap);

  card.append(head, wait, meta, services, counters, controls);
  return card;
}

function serviceName(hall, id) {
  const service = hall.services.find((s) => s.id === id);
  return service ? service.name : id;
}

// What closing a counter leaves behind: the services nobody else open there serves.
function closingNote(hall, counter) {
  const orphaned = counter.services.filter((id) =>
    !hall.counters.some((c) => c.id !== counter.id && c.open && c.services.includes(id)));
  const waiting = (id) => (hall.services.find((s) => s.id === id) || { waiting: 0 }).waiting;
  if (!orphaned.length) return "Its consumers go on being called at the other open counters.";
  return `No other open counter here serves ${orphaned.map((id) => `${serviceName(hall, id)} `
    + `(${waiting(id)} waiting)`).join(", ")}: nobody will be called for it until a counter opens.`;
}

function renderCounter(hall, counter) {
  const row = el("li", "counter");
  row.dataset.counter = counter.id;
  row.dataset.open = String(counter.open);
  const stats = ops.overview && ops.overview.counters[counter.id];
  const tok = el("span", "tok");
  if (counter.token) {
    tok.append(el("span", "number", counter.token.number), el("span", "st", counter.token.status));
  } else {
    tok.append(el("span", "number", counter.open ? "idle" : "closed"));
  }
  const served = el("span", "served", stats ? `${stats.served} served` : "");
  if (stats) served.title = `${stats.no_shows} no-shows today`;
  const button = el("button", "", counter.open ? "Close" : "Open");
  button.type = "button";
  button.dataset.action = counter.open ? "close" : "open";
  const name = counter.name || counter.id;
  const toggle = () => act(button, () => api("POST", `/api/v1/counters/${encodeURIComponent(counter.id)}/${counter.open ? "close" : "open"}`),
    `${hall.name}, ${name} ${counter.open ? "closed" : "opened"}`);
  button.onclick = () => counter.open
    ? confirmThen(`Close ${name} at ${hall.name}?`,
        closingNote(hall, counter), `Close ${name}`, toggle)
    : toggle();
  row.append(el("span", "cid", name), el("span", "dot"), tok, served, button);
  row.title = `${name} (${counter.id}): ${counter.services.map((id) => serviceName(hall, id)).join(", ")}`;
  return row;
}

function renderKpis(halls) {
  let waiting = 0, issued = 0, open = 0, total = 0, worst = null, worstWhere = "";
  for (const hall of halls) {
    waiting += hall.waiting;
    issued += hall.issued_today;
    for (const counter of hall.counters) { total += 1; if (counter.open) open += 1; }
    for (const service of hall.services) {
      const p90 = service.estimate ? service.estimate.p90_s : null;
      if (p90 !== null && (worst === null || p90 > worst)) { worst = p90; worstWhere = `${hall.name}, ${service.name}`; }
    }
  }
  $("kpi-waiting").textContent = String(waiting);
  $("kpi-issued").textContent = String(issued);
  $("kpi-open").textContent = `${open}/${total}`;
  $("kpi-worst").textContent = worst === null ? "–" : `${minutes(worst)} min`;
  $("kpi-worst-where").textContent = worst === null ? "longest p90 wait" : `p90 wait: ${worstWhere}`;
  $("kpi-worst-box").classList.toggle("alarm", worst !== null && worst >= 1800);
  if (ops.overview) {
    const served = Object.values(ops.overview.counters).reduce((n, v) => n + v.served, 0);
    const away = Object.values(ops.overview.substations).reduce((n, v) => n + v.turned_away, 0);
    $("kpi-served").textContent = String(served);
    $("kpi-away").textContent = String(away);
  }
}

function showBilling(b) {
  if (!b) return;
  ops.billing = b;
  $("billing").dataset.paused = String(b.paused);
  $("billing").dataset.down = String(b.state === "down");
  const state = $("billing-state");
  state.textContent = b.paused ? "paused" : b.state;
  state.className = "badge " + (b.paused ? "paused" : b.state);
  $("billing-sim").hidden = !b.simulated;
  $("b-limit").textContent = String(b.limit);
  $("b-inflight").textContent = String(b.in_flight);
  $("b-queued").textContent = String(b.outbox.queued);
  $("b-oldest").textContent = b.outbox.oldest_queued_s === null ? "–" : `${b.outbox.oldest_queued_s.toFixed(1)} s`;
  $("b-breaker").textContent = b.breaker.state.replace("_", "-");
  $("b-shed").textContent = `${b.shed.payment || 0} / ${b.shed.lookup || 0}`;
  $("b-posted").textContent = `${b.outbox.posted} / ${b.outbox.failed}`;
  // A payment failing (or settled elsewhere) moves the failed count: the worklist reloads now,
  // and the cash-up with it, so the two never disagree for long; other moves wait their turn.
  const failedMoved = ops.failedCount !== null && ops.failedCount !== b.outbox.failed;
  ops.failedCount = b.outbox.failed;
  ops.paySig = `${b.outbox.queued}/${b.outbox.posted}/${b.outbox.failed}`;
  if (failedMoved) refreshSettle();
  if (failedMoved && cashUp.loaded) refreshCashUp();
  else if (cashUp.loaded) cashUpIfMoved();
  const toggle = $("outbox-toggle");
  toggle.textContent = b.paused ? "Resume outbox" : "Pause outbox";
  toggle.dataset.action = b.paused ? "resume" : "pause";
}

// -- alerts ------------------------------------------------------------------------------------
// The server sends its alerts every second on the ops channel (and GET /api/v1/ops/alerts);
// the hall boards' own report of their voices, when the hub sends one, adds quieter notices.

function showAlerts(alerts) {
  ops.alerts = Array.isArray(alerts) ? alerts : [];
  renderAlerts();
}

function boardNotices() {
  const notices = [];
  for (const [sid, report] of Object.entries(ops.boards || {})) {
    const hall = ops.halls.get(sid);
    const where = hall ? hall.name : sid;
    const silentHindi = (report && report.no_hindi_voice) || 0;
    const chimeOnly = (report && report.chime_only) || 0;
    if (chimeOnly > 0) {
      notices.push({ key: `board_chime_only:${sid}`, level: "notice", kind: "board_chime_only", substation: sid,
        title: `${where}: ${chimeOnly} of ${report.connected || chimeOnly} board screens have no voice at all (chime only)`,
        action: "Calls are not spoken there. Install a Hindi (or at least an English) text-to-speech voice on that screen's browser." });
    } else if (silentHindi > 0) {
      notices.push({ key: `board_no_hindi_voice:${sid}`, level: "notice", kind: "board_no_hindi_voice", substation: sid,
        title: `${where}: ${silentHindi} of ${report.connected || silentHindi} board screens have no Hindi voice`,
        action: "Calls are announced in English only there. Install a Hindi text-to-speech voice on that screen's browser." });
    }
  }
  return notices;
}

function renderAlerts() {
  const all = [...ops.alerts, ...boardNotices(), ...hookNotices()];
  const list = $("alert-list");
  list.replaceChildren(...all.map((alert) => {
    const item = el("li", `alert ${alert.level}`);
    item.dataset.kind = alert.kind;
    item.dataset.key = alert.key;
    if (alert.substation) item.dataset.substation = alert.substation;
    const level = alert.level === "critical" ? "ACT NOW" : alert.level === "warning" ? "WARNING" : "NOTICE";
    item.append(el("span", "alert-level", level), el("b", "alert-title", alert.title), el("span", "alert-action", alert.action));
    return item;
  }));
  const section = $("alerts");
  section.dataset.count = String(all.length);
  section.dataset.level = all.some((a) => a.level === "critical") ? "critical"
    : all.some((a) => a.level === "warning") ? "warning" : all.length ? "notice" : "clear";
  $("alerts-clear").hidden = all.length > 0;
  const critical = ops.alerts.filter((a) => a.level === "critical").length;
  document.title = critical ? `(${critical}) ACT NOW · Ops · cash counters` : "Ops · cash counters";
  for (const card of document.querySelectorAll("#halls .hall")) {
    const levels = all.filter((a) => a.substation === card.dataset.substation).map((a) => a.level);
    card.dataset.alert = levels.includes("critical") ? "critical" : levels.includes("warning") ? "warning" : "none";
  }
}

// -- asking before acting ------------------------------------------------------------------------
// A page dialog, not window.confirm: it says what the action will do and can be styled to read.

function confirmThen(title, text, okLabel, work) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  dialog.returnValue = "";
  dialog.onclose = () => { if (dialog.returnValue === "ok") work(); };
  dialog.showModal();
  $("confirm-cancel").focus();
}

function sample() {
  const b = ops.billing;
  if (!b) return;
  let waiting = 0;
  for (const hall of ops.halls.values()) waiting += hall.waiting;
  const push = (name, value) => { const s = ops.series[name]; s.push(value); if (s.length > HISTORY) s.shift(); };
  push("limit", b.limit);
  push("inflight", b.in_flight);
  push("outbox", b.outbox.queued);
  push("waiting", waiting);
  chart("chart-limit", [["limit", "#4ea1ff"], ["inflight", "#2fbf71"]]);
  chart("chart-outbox", [["outbox", "#f2b233"]]);
  chart("chart-waiting", [["waiting", "#c58cff"]]);
}

function chart(id, lines) {
  const canvas = $(id);
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 14;
  g.clearRect(0, 0, w, h);
  let top = 1;
  for (const [name] of lines) for (const v of ops.series[name]) top = Math.max(top, v);
  top = Math.ceil(top * 1.15);
  g.strokeStyle = "#27323f";
  g.lineWidth = 1;
  g.beginPath(); g.moveTo(0, pad); g.lineTo(w, pad); g.moveTo(0, h - 2); g.lineTo(w, h - 2); g.stroke();
  g.fillStyle = "#8b9bab";
  g.font = "10px sans-serif";
  g.fillText(String(top), 2, 10);
  g.fillText(`${Math.round(HISTORY / 60)} min`, w - 34, h - 5);
  for (const [name, color] of lines) {
    const values = ops.series[name];
    if (!values.length) continue;
    g.strokeStyle = color;
    g.lineWidth = 1.6;
    g.beginPath();
    values.forEach((v, i) => {
      const x = w - (values.length - 1 - i) * (w / HISTORY);
      const y = h - 2 - (v / top) * (h - pad - 2);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
    g.fillStyle = color;
    g.fillText(String(values[values.length - 1]), w - 30 - 26 * lines.indexOf(lines.find((l) => l[0] === name)), 10);
  }
}

// -- start -------------------------------------------------------------------------------------

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key").value.trim();
  $("key").value = "";
  if (key) signIn(key);
});
$("sign-out").addEventListener("click", () => signOut(""));
$("outbox-toggle").addEventListener("click", () => {
  const button = $("outbox-toggle");
  const pausing = !(ops.billing && ops.billing.paused);
  act(button, async () => showBilling((await api("POST", `/api/v1/ops/billing/${pausing ? "pause" : "resume"}`)).billing),
      pausing ? "Outbox paused: payments keep queueing durably" : "Outbox resumed");
});

// -- bookable slots ----------------------------------------------------------------------------

async function setUpSlots() {
  const select = $("slots-sub");
  if (!select.options.length) {
    const { substations } = await api("GET", "/api/v1/substations");
    for (const sub of substations) select.append(new Option(`${sub.id} ${sub.name}`, sub.id));
    const tomorrow = new Date(Date.now() + 86400000);
    $("slots-day").value = tomorrow.toISOString().slice(0, 10);
    select.onchange = showSlots;
    $("slots-form").onsubmit = (event) => { event.preventDefault(); publishSlots(); };
  }
  showSlots();
}

async function showSlots() {
  const sid = $("slots-sub").value;
  const list = $("slots-days");
  try {
    const { days } = await api("GET", `/api/v1/public/substations/${encodeURIComponent(sid)}/slots`);
    list.replaceChildren(...withClosedDays(days).map((day) => {
      const item = el("li", day.closed ? "closed" : day.month_end ? "month-end" : "");
      item.dataset.day = day.day;
      item.title = "Click to pick this day for publishing";
      item.onclick = () => { $("slots-day").value = day.day; };
      if (day.closed) {
        item.append(el("b", "", day.day.slice(5)), el("span", "", "closed"), el("div", "", "publish to open"));
        return item;
      }
      const capacity = day.slots.reduce((n, slot) => n + slot.capacity, 0);
      item.append(el("b", "", day.day.slice(5)),
                  el("span", "", `${capacity - day.free} of ${capacity} booked`),
                  el("div", "", `${day.slots.length} slots x ${day.slots.length ? day.slots[0].capacity : 0}`));
      if (day.month_end) item.title = "The month-end rush: the phone page steers bookings to other days";
      return item;
    }));
  } catch (error) {
    toast(error.message);
  }
}

// The slot list leaves out days the counters stay shut (Sundays, holidays); show them as gaps.
function withClosedDays(days) {
  if (!days.length) return days;
  const all = [];
  const at = new Date(`${days[0].day}T00:00:00Z`);
  const last = days[days.length - 1].day;
  const byDay = new Map(days.map((day) => [day.day, day]));
  for (let day = days[0].day; day <= last; at.setUTCDate(at.getUTCDate() + 1), day = at.toISOString().slice(0, 10)) {
    all.push(byDay.get(day) || { day, closed: true });
  }
  return all;
}

function publishSlots() {
  const sid = $("slots-sub").value;
  const day = $("slots-day").value;
  const body = { slot_minutes: Number($("slots-minutes").value), share: Number($("slots-share").value) };
  act($("slots-publish"), async () => {
    const { plan } = await api("PUT", `/api/v1/ops/substations/${encodeURIComponent(sid)}/slots/${day}`, body);
    toast(`${sid} ${day}: ${plan.slots} slots of ${plan.slot_minutes} min, ${plan.capacity} bookings each`, true);
    await showSlots();
  });
}

// -- payments to settle ----------------------------------------------------------------------------
// Payments billing refused for good (every counter's, oldest first) wait here until ops correct
// the account and resubmit them (the same payment, a new attempt) or record them refunded. The
// list reloads on the page's refresh cycle and as soon as the live feed's count of failed
// payments moves. Rows are kept by payment id, so an account being typed survives a reload.

const settle = {
  rows: new Map(),       // payment id -> its table row
  payments: new Map(),   // payment id -> the payment as last listed
  asked: 0,              // lists asked for so far (numbers each answer)
  loading: false, again: false, loaded: false,
  settled: new Map(),    // payment id -> lists asked before it was settled here (their answers are stale for it)
};

function rupees(paise) {
  return `Rs ${Math.floor(paise / 100).toLocaleString("en-US")}.${String(paise % 100).padStart(2, "0")}`;
}

/** A counter by its display name and its hall's, from the live snapshot (ids until it comes). */
function counterLabel(sid, cid) {
  const hall = ops.halls.get(sid);
  const counter = hall && hall.counters.find((c) => c.id === cid);
  return { name: (counter && counter.name) || cid, hall: hall ? hall.name : sid };
}

/** When a payment was taken, as the halls' clocks read it: the time, and the day if not today. */
function takenText(iso) {
  if (!iso) return "–";
  const day = iso.slice(0, 10), time = iso.slice(11, 16);
  return day === cashUp.today ? time : `${day} ${time}`;
}

async function refreshSettle() {
  if (!sessionStorage.getItem(KEY_NAME)) return;
  if (settle.loading) { settle.again = true; return; }
  settle.loading = true;
  const asked = ++settle.asked;
  try {
    const { payments } = await api("GET", "/api/v1/payments?status=failed");
    showSettle(payments, asked);
  } catch (error) {
    if (!settle.loaded) $("settle-empty").textContent = `Cannot load the payments to settle: ${error.message}`;
  } finally {
    settle.loading = false;
    if (settle.again) { settle.again = false; refreshSettle(); }
  }
}

function showSettle(payments, asked) {
  settle.loaded = true;
  for (const [id, before] of settle.settled) if (asked > before) settle.settled.delete(id);
  const listed = payments.filter((p) => !settle.settled.has(p.id));
  const keep = new Set(listed.map((p) => p.id));
  for (const [id, row] of settle.rows) {
    if (!keep.has(id)) { row.remove(); settle.rows.delete(id); settle.payments.delete(id); }
  }
  const order = listed.map((p) => {
    settle.payments.set(p.id, p);
    let row = settle.rows.get(p.id);
    if (!row) { row = settleRow(p); settle.rows.set(p.id, row); } else fillSettleRow(row, p);
    return row;
  });
  const body = $("settle-rows");
  if (order.some((row, i) => body.children[i] !== row) || body.children.length !== order.length) {
    const focused = document.activeElement;
    body.replaceChildren(...order);
    if (focused && body.contains(focused)) focused.focus();
  }
  showSettleCount();
}

function showSettleCount() {
  const n = settle.rows.size;
  $("settle").dataset.count = String(n);
  $("settle-count").textContent = String(n);
  $("settle-count").className = "badge" + (n ? " warn" : " up");
  $("settle-table").hidden = n === 0;
  $("settle-empty").hidden = n > 0;
  if (n === 0) $("settle-empty").textContent = "No payments to settle: billing has refused none that wait for a corrected account or a refund.";
}

function cell(label, className, text) {
  const td = el("td", className, text);
  td.dataset.label = label;
  return td;
}

function settleRow(p) {
  const row = el("tr", "settle-row");
  row.dataset.payment = p.id;
  const form = el("form", "settle-act");
  const input = el("input", "settle-account");
  input.name = "account";
  input.autocomplete = "off";
  input.spellcheck = false;
  input.value = p.account;
  const resubmitButton = el("button", "", "Resubmit");
  resubmitButton.type = "submit";
  resubmitButton.dataset.action = "resubmit";
  const refundButton = el("button", "danger", "Refund");
  refundButton.type = "button";
  refundButton.dataset.action = "refund";
  const error = el("p", "settle-error error");
  error.setAttribute("role", "alert");
  error.hidden = true;
  form.append(input, resubmitButton, refundButton, error);
  form.onsubmit = (event) => { event.preventDefault(); resubmit(p.id, row); };
  input.oninput = () => { error.hidden = true; };          // a refusal stands until the account is edited
  refundButton.onclick = () => askRefund(p.id, row);
  row.append(cell("Receipt", "receipt"), cell("Counter", "where"), cell("Account", "account"),
             cell("Amount", "num amount"), cell("Mode", "mode"), cell("Taken", "when"),
             cell("Why billing refused it", "reason"));
  const act = cell("Resubmit or refund", "act");
  act.append(form);
  row.append(act);
  fillSettleRow(row, p);
  return row;
}

function fillSettleRow(row, p) {
  const where = counterLabel(p.substation, p.counter);
  row.dataset.receipt = p.receipt;
  row.querySelector(".receipt").textContent = p.receipt;
  const counter = row.querySelector(".where");
  counter.replaceChildren(el("b", "", where.name), el("span", "hall-name", where.hall));
  row.querySelector(".account").textContent = p.account;
  row.querySelector(".amount").textContent = rupees(p.amount_paise);
  row.querySelector(".mode").textContent = p.mode;
  row.querySelector(".when").textContent = takenText(p.created_at);
  const reason = row.querySelector(".reason");
  reason.textContent = p.reason_text || p.reason || "–";
  reason.title = p.reason ? `Billing answered: ${p.reason}; ${p.attempts} attempt${p.attempts === 1 ? "" : "s"}` : "";
  row.querySelector(".settle-account").setAttribute("aria-label", `Account to resubmit ${p.receipt} with`);
}

/** Settled from this page: out of the list at once (an answer asked for earlier is stale for it). */
function settled(id) {
  settle.settled.set(id, settle.asked);
  const row = settle.rows.get(id);
  if (row) row.remove();
  settle.rows.delete(id);
  settle.payments.delete(id);
  showSettleCount();
  refreshSettle();
  refreshCashUp();
}

async function settleAction(row, work) {
  const error = row.querySelector(".settle-error");
  const buttons = row.querySelectorAll("button");
  error.hidden = true;
  buttons.forEach((b) => { b.disabled = true; });
  try {
    await work();
  } catch (failure) {
    error.textContent = failure.message;      // the server's own words, where the action was
    error.hidden = false;
    if (failure.status === 422) row.querySelector(".settle-account").focus();
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function resubmit(id, row) {
  const p = settle.payments.get(id);
  if (!p) return;
  const account = row.querySelector(".settle-account").value.trim();
  const body = account === p.account ? {} : { account };
  settleAction(row, async () => {
    const { payment } = await api("POST", `/api/v1/payments/${encodeURIComponent(id)}/resubmit`, body);
    settled(id);
    toast(`${p.receipt} resubmitted to billing with account ${payment.account}`, true);
  });
}

function askRefund(id, row) {
  const p = settle.payments.get(id);
  if (!p) return;
  const where = counterLabel(p.substation, p.counter);
  confirmThen(`Record ${p.receipt} refunded?`,
    `${rupees(p.amount_paise)} (${p.mode}) taken at ${where.name}, ${where.hall} for account ${p.account}: `
    + "record that the consumer has been given it back. It is not sent to billing again, and the "
    + "counter's cash-up counts it refunded.", "Record refund",
    () => settleAction(row, async () => {
      await api("POST", `/api/v1/payments/${encodeURIComponent(id)}/refund`);
      settled(id);
      toast(`${p.receipt} recorded refunded (${rupees(p.amount_paise)})`, true);
    }));
}

// -- cash-up ---------------------------------------------------------------------------------------
// One row per counter that took payments on a day: taken, and of it posted, pending, failed and
// refunded (by mode), the cash and the other modes, and what its drawer should hold; one line per
// hall for its counters that took nothing; all from one request (/api/v1/reports/cash-up). Live
// changes (the feed's outbox counts) reload it, at most every CASH_UP_EVERY_MS.

const CASH_UP_EVERY_MS = 10_000;
const cashUp = { loads: 0, sig: null, at: 0, today: null, followToday: true, loaded: false, last: null };
const FIGURES = ["taken", "posted", "pending", "failed", "refunded"];

function setUpCashUp() {
  const input = $("cashup-day");
  input.onchange = () => { cashUp.followToday = !input.value || input.value === cashUp.today; refreshCashUp(); };
  $("cashup-today").onclick = () => { cashUp.followToday = true; input.value = cashUp.today || ""; refreshCashUp(); };
  $("cashup-form").onsubmit = (event) => { event.preventDefault(); refreshCashUp(); };
  refreshCashUp();
}

/** Reload when payments have moved since the last load (not more often than CASH_UP_EVERY_MS). */
function cashUpIfMoved() {
  const due = Date.now() - cashUp.at >= CASH_UP_EVERY_MS;
  if (due && (ops.paySig !== cashUp.sig || Date.now() - cashUp.at >= 6 * CASH_UP_EVERY_MS)) refreshCashUp();
}

async function refreshCashUp() {
  if (!sessionStorage.getItem(KEY_NAME)) return;
  const load = ++cashUp.loads;
  cashUp.sig = ops.paySig;
  cashUp.at = Date.now();
  const picked = $("cashup-day").value;
  const date = cashUp.followToday || !picked ? "" : `?date=${encodeURIComponent(picked)}`;
  try {
    const { day, counters } = await api("GET", `/api/v1/reports/cash-up${date}`);   // one call, every counter
    if (load !== cashUp.loads) return;                           // a newer load (another day) won
    if (cashUp.followToday) {
      cashUp.today = day;
      $("cashup-day").value = day;
    }
    showCashUp(day, counters);
  } catch (error) {
    if (load !== cashUp.loads) return;
    $("cashup-note").hidden = false;
    $("cashup-note").textContent = `Cannot load the cash-up: ${error.message}`;
  }
}

function moneyCell(label, className, figure) {
  const td = cell(label, `num ${className}`);
  if (!figure || figure.count === 0) {
    td.classList.add("zero");
    td.textContent = "0";
    return td;
  }
  td.append(el("b", "", String(figure.count)), el("span", "rs", rupees(figure.paise)));
  return td;
}

function cashCell(byMode) {
  return moneyCell("Cash", "cash", byMode.cash);
}

function otherModes(byMode) {
  return Object.entries(byMode).filter(([mode]) => mode !== "cash");
}

function modeLine(mode, figure) {
  const line = el("span", "mode-line");
  line.dataset.mode = mode;
  line.append(`${mode} `, el("b", "", String(figure.count)), " ", el("span", "rs", rupees(figure.paise)));
  return line;
}

function modesCell(others) {
  const td = cell("Other modes", "modes");
  if (!others.length) { td.textContent = "none"; td.classList.add("zero"); return td; }
  for (const [mode, figure] of others) td.append(modeLine(mode, figure));
  return td;
}

/** Refunded, with the modes the money went back in under it. */
function refundedCell(figure, byMode) {
  const td = moneyCell("Refunded", "refunded", figure);
  for (const [mode, part] of Object.entries(byMode || {})) td.append(modeLine(mode, part));
  return td;
}

/** What the drawer should hold: cash taken less cash refunded, then cheques and drafts. */
function drawerCell(inDrawer) {
  const td = cell("In the drawer", "num drawer");
  const cash = (inDrawer && inDrawer.cash) || { count: 0, paise: 0 };
  const line = el("b", cash.paise ? "drawer-cash" : "drawer-cash zero", rupees(cash.paise));
  line.dataset.mode = "cash";
  td.append(line);
  for (const [mode, figure] of Object.entries(inDrawer || {})) if (mode !== "cash") td.append(modeLine(mode, figure));
  return td;
}

function addInto(sums, byMode) {
  for (const [mode, figure] of Object.entries(byMode || {})) {
    const sum = sums[mode] || (sums[mode] = { count: 0, paise: 0 });
    sum.count += figure.count;
    sum.paise += figure.paise;
  }
}

function figuresInto(tr, r) {
  for (const figure of FIGURES) {
    tr.append(figure === "refunded" ? refundedCell(r.refunded, r.refunded_by_mode)
      : moneyCell(figure[0].toUpperCase() + figure.slice(1), figure, r[figure]));
  }
  tr.append(cashCell(r.by_mode), modesCell(otherModes(r.by_mode)), drawerCell(r.in_drawer));
}

/** One line for a hall's counters that took nothing: 40 idle counters must not push the rest away. */
function idleRow(sid, idle, others) {
  const hall = counterLabel(sid, "").hall;
  const tr = el("tr", "cashup-row nothing");
  tr.dataset.hall = sid;
  const n = idle.length;
  const text = `${hall}: ${n}${others ? " other" : ""} counter${n === 1 ? "" : "s"} took nothing`;
  const td = cell("", "nothing-note", text);
  td.colSpan = FIGURES.length + 4;
  td.title = idle.map((r) => counterLabel(r.substation, r.counter).name).join(", ");
  tr.append(td);
  return tr;
}

function showCashUp(day, rows) {
  cashUp.loaded = true;
  cashUp.last = { day, rows };
  const total = { by_mode: {}, refunded_by_mode: {}, in_drawer: { cash: { count: 0, paise: 0 } } };
  for (const name of FIGURES) total[name] = { count: 0, paise: 0 };
  const halls = new Map();                                        // in the scenario's order
  for (const r of rows) {
    if (!halls.has(r.substation)) halls.set(r.substation, []);
    halls.get(r.substation).push(r);
  }
  let taking = 0;
  const body = [];
  for (const [sid, counters] of halls) {
    const idle = counters.filter((r) => r.taken.count === 0);
    for (const r of counters) {
      if (r.taken.count === 0) continue;
      taking += 1;
      const where = counterLabel(r.substation, r.counter);
      const tr = el("tr", "cashup-row");
      tr.dataset.counter = r.counter;
      const name = cell("Counter", "where");
      name.append(el("b", "", where.name), el("span", "hall-name", where.hall));
      tr.append(name);
      figuresInto(tr, r);
      for (const figure of FIGURES) {
        total[figure].count += r[figure].count;
        total[figure].paise += r[figure].paise;
      }
      addInto(total.by_mode, r.by_mode);
      addInto(total.refunded_by_mode, r.refunded_by_mode);
      addInto(total.in_drawer, r.in_drawer);
      body.push(tr);
    }
    if (idle.length) body.push(idleRow(sid, idle, idle.length < counters.length));
  }
  $("cashup-rows").replaceChildren(...body);
  const foot = el("tr", "cashup-row total");
  foot.dataset.counter = "";
  foot.append(cell("", "where", `All ${rows.length} counters`));
  figuresInto(foot, total);
  $("cashup-total").replaceChildren(foot);
  $("cashup-table").hidden = false;
  $("cashup-table").dataset.day = day;
  const note = $("cashup-note");
  note.hidden = false;
  note.textContent = taking
    ? `${day === cashUp.today ? "Today, " : ""}${day}: ${taking} of ${rows.length} counters took payments.`
    : `${day === cashUp.today ? "Today, " : ""}${day}: no counter took any payment.`;
}

/** The payments and the cash-up drawn again as they were, with counters' and halls' names. */
function relabelPayments() {
  for (const [id, row] of settle.rows) fillSettleRow(row, settle.payments.get(id));
  if (cashUp.last) showCashUp(cashUp.last.day, cashUp.last.rows);
}

function resetPayments() {
  settle.rows.clear();
  settle.payments.clear();
  settle.settled.clear();
  settle.loaded = false;
  $("settle-rows").replaceChildren();
  $("settle-table").hidden = true;
  $("settle-empty").hidden = false;
  $("settle-empty").textContent = "Loading the payments billing refused…";
  cashUp.loads += 1;
  cashUp.loaded = false;
  cashUp.last = null;
  cashUp.followToday = true;
  $("cashup-rows").replaceChildren();
  $("cashup-total").replaceChildren();
  $("cashup-table").hidden = true;
  $("cashup-note").textContent = "Loading the cash-up…";
}

// -- plan ----------------------------------------------------------------------------------------
// The month simulation (peak-sim's focused run) on the server: counters per hall and the shares
// in, the per-hall table and the plots out. One plan runs at a time, in the server's worker
// process; the page asks how far it is every PLAN_POLL_MS and draws the bar. A plan another tab
// started is followed too, and a Run refused because of it shows the server's words.

const PLAN_POLL_MS = 250;
const plan = { limits: null, following: null, timer: null, shown: null };

async function setUpPlan() {
  try {
    const found = await api("GET", "/api/v1/ops/plans");
    if (!found.limits) {
      $("plan-note").textContent = `Plans cannot run on this server: ${found.unavailable}`;
      return;
    }
    plan.limits = found.limits;
    planInputs(found.limits.defaults);
    $("plan-note").hidden = true;
    $("plan-form").hidden = false;
    $("plan-form").onsubmit = (event) => { event.preventDefault(); runPlan(); };
    $("plan-reset").onclick = () => planInputs(plan.limits.defaults);
    const latest = found.running || (found.plans[0] && found.plans[0].id);
    if (latest) followPlan(latest);
  } catch (error) {
    $("plan-note").textContent = `Cannot load the plan's figures: ${error.message}`;
  }
}

/** One number input per hall (names and counts from the server's scenario), then the figures. */
function planInputs(figures) {
  const limits = plan.limits;
  $("plan-halls").replaceChildren(...limits.halls.map((hall) => {
    const label = el("label", "plan-hall");
    label.title = `${hall.name} (${hall.id}): ${hall.counters} counters in the scenario`;
    const input = el("input");
    input.type = "number";
    input.min = "1";
    input.max = String(limits.most_counters);
    input.step = "1";
    input.required = true;
    input.dataset.hall = hall.id;
    input.value = String(figures.counters[hall.id] ?? hall.counters);
    label.append(el("span", "plan-hall-name", hall.name), el("span", "sid", hall.id), input);
    return label;
  }));
  $("plan-online").value = String(figures.online_share);
  $("plan-booking").value = String(figures.booking_share);
  for (const id of ["plan-cycles", "plan-days"]) $(id).max = String(limits.working_days);
  $("plan-cycles").value = String(figures.due_date_cycles);
  $("plan-days").value = String(figures.days);
  $("plan-days").title = `The month's last working days (it has ${limits.working_days}; `
    + `the last week is ${limits.last_week_days})`;
}

function planBody() {
  const counters = {};
  for (const input of $("plan-halls").querySelectorAll("input[data-hall]")) counters[input.dataset.hall] = Number(input.value);
  return { counters, online_share: Number($("plan-online").value), booking_share: Number($("plan-booking").value),
           due_date_cycles: Number($("plan-cycles").value), days: Number($("plan-days").value) };
}

async function runPlan() {
  const button = $("plan-run");
  button.disabled = true;
  $("plan-error").hidden = true;
  try {
    const { plan: started } = await api("POST", "/api/v1/ops/plans", planBody());
    followPlan(started.id, started);
  } catch (error) {
    $("plan-error").textContent = error.message;            // the server's own words
    $("plan-error").hidden = false;
    const running = error.body && error.body.error && error.body.error.plan_id;
    if (running) followPlan(running);                       // someone else's: show how far it is
    else button.disabled = false;
  }
}

function followPlan(id, known) {
  clearTimeout(plan.timer);
  plan.following = id;
  if (known) showPlan(known);
  pollPlan(id);
}

async function pollPlan(id) {
  if (plan.following !== id || !sessionStorage.getItem(KEY_NAME)) return;
  let found;
  try {
    found = (await api("GET", `/api/v1/ops/plans/${encodeURIComponent(id)}`)).plan;
  } catch (error) {
    if (plan.following !== id) return;
    if (error.status === 404) { plan.following = null; showPlanIdle(); return; }   // forgotten (a restart)
    plan.timer = setTimeout(() => pollPlan(id), 4 * PLAN_POLL_MS);
    return;
  }
  if (plan.following !== id) return;
  showPlan(found);
  if (found.state === "running") plan.timer = setTimeout(() => pollPlan(id), PLAN_POLL_MS);
  else plan.following = null;
}

function showPlanIdle() {
  $("plan").dataset.state = "idle";
  $("plan-status").hidden = true;
  $("plan-run").disabled = false;
  $("plan-run").textContent = "Run plan";
}

function showPlan(p) {
  const section = $("plan");
  section.dataset.state = p.state;
  section.dataset.plan = p.id;
  const running = p.state === "running";
  const share = Math.round(p.progress * 100);
  $("plan-status").hidden = false;
  $("plan-progress").value = p.progress;
  $("plan-progress").dataset.value = String(p.progress);
  $("plan-progress-text").textContent = running ? `Simulating ${p.inputs.days} working days… ${share} %`
    : p.state === "done" ? `Done: ${p.inputs.days} working days simulated` : `Failed: ${p.error}`;
  $("plan-run").disabled = running;
  $("plan-run").textContent = running ? "Running…" : "Run plan";
  if (p.state === "failed") {
    $("plan-error").textContent = `The plan failed: ${p.error}`;
    $("plan-error").hidden = false;
  }
  if (p.state === "done" && plan.shown !== p.id) showPlanResult(p);
}

function minutesText(seconds) {
  return seconds === null || seconds === undefined ? "–" : `${minutes(seconds)} min`;
}

function showPlanResult(p) {
  plan.shown = p.id;
  const r = p.result;
  const days = r.last_week_days;
  const span = days.length ? `Last week (days ${days[0]}–${days[days.length - 1]})` : "No last-week day simulated";
  const city = r.city.map((c) => `${c.label}: p90 wait ${minutesText(c.p90_wait_s)}, `
    + `${c.turned_away.toLocaleString("en-US")} turned away of ${c.arrivals.toLocaleString("en-US")} arrivals`);
  $("plan-summary").textContent = `${span}, all halls, p90 target ${minutes(r.target_s)} min. `
    + `${city.join("; ")}. The table is under ${r.policy_label}.`;
  $("plan-rows").replaceChildren(...r.halls.map((h) => planRow(h, r)));
  $("plan-table").dataset.plan = p.id;
  const plots = $("plan-plots");
  plots.replaceChildren(...Object.entries(p.plots).map(([name, path]) => {
    const figure = el("figure", "plan-plot");
    figure.dataset.plot = name;
    const img = el("img");
    img.alt = PLOT_TITLES[name] || name;
    figure.append(img);
    planImage(img, path, p.id);
    return figure;
  }));
  $("plan-result").hidden = false;
}

const PLOT_TITLES = {
  queue: "Line length through each day of the last week, per policy",
  waits: "Waits of served consumers in the last week",
  halls: "Counters each hall needs each last-week day, and the city's total",
};

function planRow(h, r) {
  const row = el("tr", "plan-row");
  row.dataset.substation = h.substation;
  const where = cell("Hall", "where");
  where.append(el("b", "", h.name), el("span", "hall-name", h.substation));
  const counters = cell("Counters", "num counters", String(h.counters));
  if (h.counters !== h.scenario_counters) counters.append(el("span", "rs", ` (${h.scenario_counters} now)`));
  const needed = cell("Needed", "needed");
  const list = el("ol", "plan-needed");
  for (const d of h.needed) {
    const item = el("li", d.counters > h.counters ? "more" : d.counters < h.counters ? "fewer" : "", `${d.counters}${d.met ? "" : "+"}`);
    item.title = `day ${d.day}: ${d.counters} counters ${d.met ? `keep the p90 wait under ${minutes(r.target_s)} min`
      : "(the most tried) still miss the target"}`;
    list.append(item);
  }
  if (!h.needed.length) list.append(el("li", "none", "–"));
  needed.append(list);
  const p90 = cell("p90 wait", "num p90", minutesText(h.p90_wait_s));
  if (h.p90_wait_s !== null && h.p90_wait_s >= r.target_s) p90.classList.add("over");
  row.append(where, counters, needed, p90, cell("Turned away", "num away", h.turned_away.toLocaleString("en-US")),
             cell("Served", "num served", h.served.toLocaleString("en-US")));
  return row;
}

/** A plot behind the admin key: fetched with it (an <img> cannot send the header), shown as data. */
async function planImage(img, path, id) {
  try {
    const resp = await fetch(path, { headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY_NAME) || ""}` },
                                     cache: "no-store", credentials: "omit" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const blob = await resp.blob();
    const url = await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
    if (plan.shown === id) img.src = url;
  } catch (error) {
    img.alt = `${img.alt} (cannot load: ${error.message})`;
  }
}

function resetPlan() {
  clearTimeout(plan.timer);
  plan.following = null;
  plan.shown = null;
  plan.limits = null;
  $("plan").dataset.state = "idle";
  $("plan-form").hidden = true;
  $("plan-note").hidden = false;
  $("plan-note").textContent = "Loading the scenario's figures…";
  $("plan-status").hidden = true;
  $("plan-error").hidden = true;
  $("plan-result").hidden = true;
  $("plan-rows").replaceChildren();
  $("plan-plots").replaceChildren();
  $("plan-run").disabled = false;
  $("plan-run").textContent = "Run plan";
}

// -- webhooks --------------------------------------------------------------------------------------
// Endpoints that get a signed notice (Standard Webhooks) when something happens: an SMS gateway,
// a help line. The list reloads every HOOKS_EVERY_MS, so an endpoint failing shows without a
// reload (and as a notice among the alerts). Its secret is in the answer that made it and nowhere
// else: shown once, with a copy button, until ops hide it.

const HOOKS_EVERY_MS = 3000;
const EVENTS = [                     // counter_server/notices.py EVENT_TYPES, in plain words
  ["token.called", "Token called", "a counter calls a token (and calls it again)"],
  ["token.near", "Turn near", "a consumer who asked for an SMS has a few people ahead; phones offer "
    + "the SMS only while an enabled endpoint takes this"],
  ["token.no_show", "No-show", "a token was called and nobody came"],
  ["payment.posted", "Payment posted", "billing took a payment"],
  ["payment.failed", "Payment refused", "billing refused a payment for good (it waits in Payments to settle)"],
  ["hall.alert", "Hall alert", "an alert began, as on this page"],
];
const EVENT_NAMES = new Map(EVENTS.map(([type, name]) => [type, name]));
const hooks = { rows: new Map(), sigs: new Map(), removed: new Set(), list: [], timer: null, loading: false,
                loaded: false };

function setUpHooks() {
  const box = $("hooks-events");
  if (!box.children.length) {
    box.replaceChildren(...EVENTS.map(([type, name, about]) => {
      const label = el("label", "hooks-event");
      label.title = `${type}: ${about}`;
      const input = el("input");
      input.type = "checkbox";
      input.name = "events";
      input.value = type;
      label.append(input, el("span", "", name), el("code", "", type));
      return label;
    }));
    $("hooks-form").onsubmit = (event) => { event.preventDefault(); addHook(); };
    $("hooks-form").oninput = () => { $("hooks-error").hidden = true; };
    $("hooks-copy").onclick = copySecret;
    $("hooks-secret-done").onclick = hideSecret;
  }
  clearInterval(hooks.timer);
  hooks.timer = setInterval(refreshHooks, HOOKS_EVERY_MS);
  refreshHooks();
}

async function refreshHooks() {
  if (!sessionStorage.getItem(KEY_NAME) || hooks.loading) return;
  hooks.loading = true;
  try {
    const { webhooks } = await api("GET", "/api/v1/ops/webhooks");
    if (sessionStorage.getItem(KEY_NAME)) showHooks(webhooks);       // (not if signed out meanwhile)
  } catch (error) {
    if (!hooks.loaded) $("hooks-empty").textContent = `Cannot load the webhook endpoints: ${error.message}`;
  } finally {
    hooks.loading = false;
  }
}

async function addHook() {
  const events = [...$("hooks-events").querySelectorAll("input:checked")].map((input) => input.value);
  const body = { url: $("hooks-url").value.trim(), events };
  const secret = $("hooks-secret").value.trim();
  if (secret) body.secret = secret;
  const error = $("hooks-error");
  if (!events.length) {                                     // (the server's words for it name no event)
    error.textContent = "Tick what the endpoint should be sent: at least one of the events.";
    error.dataset.code = "no_events";
    error.hidden = false;
    $("hooks-events").querySelector("input").focus();
    return;
  }
  error.hidden = true;
  $("hooks-add").disabled = true;
  try {
    const { webhook } = await api("POST", "/api/v1/ops/webhooks", body);
    $("hooks-form").reset();
    showSecret(webhook);
    toast(`Endpoint added: ${webhook.url}`, true);
    refreshHooks();
  } catch (failure) {
    error.textContent = failure.message;                   // the server's own words
    error.dataset.code = failure.code || "";
    error.hidden = false;
    const field = (failure.body && failure.body.error && failure.body.error.field) || "";
    const at = field.startsWith("events") ? $("hooks-events").querySelector("input")
      : field === "secret" ? $("hooks-secret") : $("hooks-url");
    at.focus();
  } finally {
    $("hooks-add").disabled = false;
  }
}

function showSecret(webhook) {
  const box = $("hooks-secret-box");
  box.dataset.hook = webhook.id;
  $("hooks-secret-url").textContent = webhook.url;
  $("hooks-secret-value").value = webhook.secret;
  $("hooks-copy").textContent = "Copy";
  box.hidden = false;
  $("hooks-copy").focus();
}

function hideSecret() {
  const box = $("hooks-secret-box");
  box.hidden = true;
  delete box.dataset.hook;
  $("hooks-secret-value").value = "";                      // not kept on the page once hidden
}

async function copySecret() {
  const field = $("hooks-secret-value");
  let copied = false;
  try {
    await navigator.clipboard.writeText(field.value);       // (only on https or this machine)
    copied = true;
  } catch (error) {
    field.focus();
    field.select();
    try { copied = document.execCommand("copy"); } catch (ignored) { copied = false; }
  }
  if (copied) {
    $("hooks-copy").textContent = "Copied";
    toast("Secret copied: paste it into the endpoint's settings", true);
  } else {
    field.focus();
    field.select();
    toast("This browser would not copy it: the secret is selected, press Ctrl+C");
  }
}

function showHooks(list) {
  hooks.loaded = true;
  hooks.list = list.filter((h) => !hooks.removed.has(h.id));   // (an answer asked for before a removal)
  for (const [id, row] of hooks.rows) {
    if (!hooks.list.some((h) => h.id === id)) { row.remove(); hooks.rows.delete(id); hooks.sigs.delete(id); }
  }
  const order = hooks.list.map((h) => {
    let row = hooks.rows.get(h.id);
    if (!row) { row = hookRow(h); hooks.rows.set(h.id, row); }
    const sig = JSON.stringify(h);
    if (hooks.sigs.get(h.id) !== sig) { fillHookRow(row, h); hooks.sigs.set(h.id, sig); }
    return row;
  });
  const shown = $("hooks-list");
  if (order.length !== shown.children.length || order.some((row, i) => shown.children[i] !== row)) {
    shown.replaceChildren(...order);
  }
  const section = $("hooks");
  const bad = hooks.list.filter((h) => h.state !== "active");
  section.dataset.count = String(hooks.list.length);
  section.dataset.state = hooks.list.some((h) => h.state === "disabled") ? "disabled" : bad.length ? "failing" : "clear";
  const count = $("hooks-count");
  count.textContent = bad.length ? `${hooks.list.length} · ${bad.length} not delivering` : String(hooks.list.length);
  count.className = "badge " + (bad.length ? "down" : hooks.list.length ? "up" : "");
  const empty = $("hooks-empty");
  empty.hidden = hooks.list.length > 0;
  if (!hooks.list.length) {
    empty.textContent = "No webhook endpoints yet. An endpoint is another system this server tells when something "
      + "happens, each notice signed with the endpoint's secret: an SMS gateway that texts consumers when their "
      + "token is near or called, a help line that hears of hall alerts. To add one, give its URL, tick what "
      + "it should be sent and press Add endpoint; then copy the secret shown into its settings.";
  }
  renderAlerts();
}

function hookRow(h) {
  const row = el("li", "hook");
  row.dataset.hook = h.id;
  const enable = el("button", "", "Enable");
  enable.type = "button";
  enable.dataset.action = "enable";
  enable.title = "Deliver again, from the first notice it has not had";
  enable.onclick = () => act(enable, async () => {
    await api("POST", `/api/v1/ops/webhooks/${encodeURIComponent(h.id)}/enable`);
    await refreshHooks();
  }, `Endpoint enabled: ${h.url} gets the notices kept for it`);
  const remove = el("button", "danger", "Remove");
  remove.type = "button";
  remove.dataset.action = "remove";
  remove.onclick = () => askRemoveHook(h.id, remove);
  const actions = el("div", "hook-actions");
  actions.append(enable, remove);
  row.append(el("div", "hook-head"), actions, el("p", "hook-state"), el("div", "hook-recent"));
  return row;
}

function hookEvents(events) {
  return events.map((type) => EVENT_NAMES.get(type) || type);
}

function fillHookRow(row, h) {
  row.dataset.state = h.state;
  const head = row.querySelector(".hook-head");
  const badge = el("span", `badge hook-badge ${h.state}`, h.state);
  const events = el("ul", "hook-events");
  for (const type of h.events) {
    const item = el("li", "", EVENT_NAMES.get(type) || type);
    item.title = type;
    events.append(item);
  }
  head.replaceChildren(el("span", "hook-url", h.url), badge, events,
                       el("span", "hook-delivered", `${h.delivered.toLocaleString("en-US")} delivered`),
                       el("span", "hook-created", `added ${hallTime(h.created_at)}`));
  row.querySelector("[data-action=enable]").hidden = h.state !== "disabled";
  const state = row.querySelector(".hook-state");
  if (h.state === "disabled") {
    // The server's reason says how many tries failed and the last error; when, in the halls' time.
    const why = h.disabled_reason || "";
    state.textContent = `Disabled at ${hallTime(h.disabled_at)}, after failing since ${hallTime(h.failing_since)}: `
      + `${why || "no reason given"}. Its notices are kept: Enable sends them from where it stopped.`
      + (h.events.includes("token.near") && !smsOffered() ? " Meanwhile phones do not offer the SMS." : "");
    state.title = h.disabled_reason || "";
  } else if (h.state === "failing") {
    state.textContent = `Failing since ${hallTime(h.failing_since)}: ${h.failed_attempts} `
      + `tr${h.failed_attempts === 1 ? "y" : "ies"} failed (below: what it answered). The notice is tried again, `
      + "less and less often; failing on, the endpoint is disabled.";
    state.title = "";
  } else {
    state.textContent = "";
  }
  state.hidden = h.state === "active";
  const recent = row.querySelector(".hook-recent");
  if (!h.recent.length) {
    recent.replaceChildren(el("p", "hook-none", "Nothing sent yet: it gets the events ticked from when it was "
      + "added on."));
    return;
  }
  const table = el("table", "sheet hook-deliveries");
  const headRow = el("tr");
  headRow.append(el("th", "", "Last deliveries"), el("th", "", "Event"), el("th", "", "Answer"), el("th", "num", "ms"));
  const thead = el("thead");
  thead.append(headRow);
  const body = el("tbody");
  for (const tries of retries(h.recent)) {
    const d = tries[0], first = tries[tries.length - 1];
    const tr = el("tr", d.ok ? "ok" : "failed");
    tr.dataset.delivery = d.id;
    tr.dataset.ok = String(d.ok);
    tr.dataset.tries = String(tries.length);
    const type = cell("Event", "type", d.type);
    type.title = `${EVENT_NAMES.get(d.type) || d.type}; notice ${d.id}`;
    const when = cell("At", "when", tries.length > 1 ? `${hallTime(first.at)}–${hallTime(d.at).slice(-8)}` : hallTime(d.at));
    const result = cell("Answer", "result", deliveryResult(d));
    if (tries.length > 1) result.append(el("span", "tries", `tried ${tries.length} times`));
    tr.append(when, type, result, cell("ms", "num ms", d.ms === null ? "–" : String(d.ms)));
    body.append(tr);
  }
  table.append(thead, body);
  recent.replaceChildren(table);
}

/** The deliveries, newest first, with tries of one notice that failed alike in a row kept together
 * (a receiver that is down is tried again and again: one line, not ten). */
function retries(recent) {
  const groups = [];
  for (const d of recent) {
    const last = groups[groups.length - 1];
    const same = last && !d.ok && !last[0].ok && last[0].id === d.id && deliveryResult(last[0]) === deliveryResult(d);
    if (same) last.push(d); else groups.push([d]);
  }
  return groups;
}

function deliveryResult(d) {
  if (d.ok) return `${d.status} OK`;
  return d.error || (d.status ? `answered ${d.status}` : "failed");
}

/** Whether an enabled endpoint takes token.near (what the phones' SMS offer follows). */
function smsOffered(except) {
  return hooks.list.some((h) => h.id !== except && h.state !== "disabled" && h.events.includes("token.near"));
}

/** A moment the server wrote in the halls' time zone: the time, and the day if not today. */
function hallTime(iso) {
  if (!iso) return "–";
  let today = "";
  try { today = new Date().toLocaleDateString("en-CA", { timeZone: ops.timezone }); } catch (error) { /* none */ }
  const time = iso.slice(11, 19);
  return iso.slice(0, 10) === today ? time : `${iso.slice(0, 10)} ${time}`;
}

function askRemoveHook(id, button) {
  const h = hooks.list.find((x) => x.id === id);
  if (!h) return;
  const lastSms = h.events.includes("token.near") && h.state !== "disabled" && !smsOffered(id);
  confirmThen(`Remove the endpoint ${h.url}?`,
    `It will be sent nothing more (${hookEvents(h.events).join(", ")}), and its secret is forgotten: `
    + "added again, it gets a new one."
    + (lastSms ? " No other endpoint takes “Turn near”: phones will stop offering the SMS." : ""),
    "Remove endpoint",
    () => act(button, async () => {
      await api("DELETE", `/api/v1/ops/webhooks/${encodeURIComponent(id)}`);
      hooks.removed.add(id);
      if ($("hooks-secret-box").dataset.hook === id) hideSecret();
      showHooks(hooks.list);
    }, `Endpoint removed: ${h.url}`));
}

/** Endpoints not delivering, among the alerts at the top (so they are seen from anywhere). */
function hookNotices() {
  return hooks.list.filter((h) => h.state !== "active").map((h) => {
    const what = hookEvents(h.events).join(", ");
    return h.state === "disabled"
      ? { key: `webhook_disabled:${h.id}`, level: "warning", kind: "webhook_disabled",
          title: `Webhook ${h.url} is disabled: it is sent nothing (${what})`,
          action: "See Webhooks below for why; once the endpoint is mended, press Enable there." }
      : { key: `webhook_failing:${h.id}`, level: "notice", kind: "webhook_failing",
          title: `Webhook ${h.url} is failing since ${hallTime(h.failing_since)} (${what})`,
          action: "Its notices wait and are tried again; check that the endpoint is up (Webhooks below shows its answers)." };
  });
}

function resetHooks() {
  clearInterval(hooks.timer);
  hooks.timer = null;
  hooks.rows.clear();
  hooks.sigs.clear();
  hooks.removed.clear();
  hooks.list = [];
  hooks.loaded = false;
  hideSecret();
  $("hooks-form").reset();
  $("hooks-error").hidden = true;
  $("hooks-list").replaceChildren();
  $("hooks-empty").hidden = false;
  $("hooks-empty").textContent = "Loading the webhook endpoints…";
  $("hooks-count").textContent = "–";
  $("hooks-count").className = "badge";
}

// Signed in already (a reload of this tab): straight back in, once everything above is defined.
if (sessionStorage.getItem(KEY_NAME)) signIn(sessionStorage.getItem(KEY_NAME));
