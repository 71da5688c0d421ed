// The hall board: one substation's live channel, drawn for a waiting hall.
// Snapshot first, then deltas in order (a gap in `prev` means reconnect with `since`);
// "offline" when nothing arrives for 2.5 heartbeats; a called token is shown and spoken.
"use strict";

const substation = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
document.getElementById("phone-qr").src = `/q/${encodeURIComponent(substation)}/qr.svg`;
const board = { seq: null, hall: null, nearby: [], online: null, intervalS: 5, lastHeard: 0, timezone: undefined };
let socket = null;
let retryMs = 1000;

const $ = (id) => document.getElementById(id);

function setState(state) {
  document.body.dataset.state = state;
  const link = $("link");
  link.textContent = state === "live" ? "Live · लाइव"
    : state === "offline" ? "Offline · ऑफ़लाइन" : "Connecting · जुड़ रहा है";
  $("offline-banner").hidden = state !== "offline";
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const since = board.seq === null ? "" : `?since=${board.seq}`;
  socket = new WebSocket(`${scheme}://${location.host}/api/v1/substations/${encodeURIComponent(substation)}/live${since}`);
  socket.onmessage = (event) => receive(JSON.parse(event.data));
  socket.onclose = () => {
    setState("offline");
    const wait = Math.min(15000, retryMs) * (0.5 + Math.random());   // backoff with jitter
    retryMs = Math.min(15000, retryMs * 2);
    setTimeout(connect, wait);
  };
}

function receive(message) {
  board.lastHeard = Date.now();
  if (message.type === "snapshot") {
    Object.assign(board, { seq: message.seq, hall: message.hall, nearby: message.nearby, online: message.online,
                           timezone: message.timezone });
  } else if (message.type === "delta") {
    if (board.seq !== null && message.prev !== board.seq) {   // missed one: resume from what we hold
      socket.close();
      return;
    }
    board.seq = message.seq;
    board.hall = message.hall;
    for (const event of message.events) {
      if (event.kind === "called" || event.kind === "recalled") announce(event);
    }
  } else if (message.type === "heartbeat") {
    board.intervalS = message.interval_s;
    if (message.nearby) board.nearby = message.nearby;
  } else {
    return;
  }
  retryMs = 1000;
  setState("live");
  document.body.dataset.seq = String(board.seq);
  render();
}

function minutes(seconds) {
  return Math.max(0, Math.round(seconds / 60));
}

function waitText(estimate) {
  if (!estimate || estimate.p50_s === null) return { hi: "काउंटर बंद", en: "no counter open" };
  const low = minutes(estimate.p50_s), high = Math.max(low, minutes(estimate.p90_s));
  if (high < 1) return { hi: "तुरंत", en: "now" };
  const range = low === high ? `${low}` : `${low}–${high}`;
  return { hi: `${range} मिनट`, en: `${range} min`, range };
}

function counterNumber(counterId) {
  return (counterId || "").split("-C").pop();
}

function render() {
  const hall = board.hall;
  if (!hall) return;
  $("name-hi").textContent = hall.name_hi || hall.name;
  $("name-en").textContent = `${hall.name} · ${hall.substation}`;
  const names = Object.fromEntries(hall.services.map((s) => [s.id, s]));

  $("counters").replaceChildren(...hall.counters.map((counter) => {
    const item = document.createElement("li");
    item.className = "counter" + (counter.open ? "" : " closed");
    item.dataset.counter = counter.id;
    const where = document.createElement("div");
    where.className = "where";
    where.textContent = `काउंटर ${counterNumber(counter.id)} · Counter ${counterNumber(counter.id)}`;
    const number = document.createElement("div");
    number.className = "number";
    if (!counter.open) {
      number.classList.add("idle");
      number.textContent = "बंद · Closed";
    } else if (counter.token) {
      number.textContent = counter.token.number;
    } else {
      number.classList.add("idle");
      number.textContent = "खाली · Free";
    }
    item.append(where, number);
    if (flashing.has(counter.id)) item.classList.add("flash");
    return item;
  }));

  const bill = names.bill_payment || hall.services[0];
  const wait = waitText(bill && bill.estimate);
  $("wait-range").textContent = wait.range ? `${wait.range} मिनट · min` : `${wait.hi} · ${wait.en}`;
  $("waiting-count").textContent = `प्रतीक्षा में ${hall.waiting} · ${hall.waiting} waiting`;
  $("services").replaceChildren(...hall.services.map((service) => {
    const item = document.createElement("li");
    const text = waitText(service.estimate);
    item.textContent = `${service.letter} ${service.name_hi} / ${service.name}: ${service.waiting} · ${text.hi} / ${text.en}`;
    return item;
  }));

  $("next").replaceChildren(...hall.next.slice(0, 10).map((token) => {
    const item = document.createElement("li");
    const number = document.createElement("span");
    number.textContent = token.number;
    if (token.priority !== "normal") {
      const prio = document.createElement("span");
      prio.className = "prio";
      prio.textContent = token.priority === "senior" ? " वरिष्ठ" : " दिव्यांग";
      number.append(prio);
    }
    const eta = document.createElement("span");
    eta.className = "eta";
    eta.textContent = waitText(token.estimate).en;
    item.append(number, eta);
    return item;
  }));

  $("nearby").replaceChildren(...board.nearby.map((other) => {
    const item = document.createElement("li");
    const text = waitText(other.estimate);
    item.append(`${other.name_hi} / ${other.name}: ${text.hi} · ${text.en} `);
    const km = document.createElement("span");
    km.className = "km";
    km.textContent = `(${other.distance_km} km)`;
    item.append(km);
    return item;
  }));

  const hint = $("online-hint");
  const long = board.online && bill && bill.estimate && bill.estimate.p50_s !== null
    && bill.estimate.p50_s > board.online.hint_after_s;
  hint.hidden = !long;
  if (long) {
    $("online-hi").textContent = board.online.text_hi;
    $("online-en").textContent = board.online.text;
  }
}

const flashing = new Set();

function announce(event) {
  const token = event.token;
  if (!token || !event.counter) return;
  const counter = counterNumber(event.counter);
  const banner = $("called-banner");
  banner.textContent = `${token.number} → काउंटर ${counter} · Counter ${counter}`;
  banner.hidden = false;
  flashing.add(event.counter);
  setTimeout(() => { flashing.delete(event.counter); banner.hidden = true; render(); }, 6000);
  if (!("speechSynthesis" in window)) return;
  const spoken = token.number.replace("-", " ");
  const hindi = new SpeechSynthesisUtterance(`टोकन ${spoken}, काउंटर ${counter} पर आएँ`);
  hindi.lang = "hi-IN";
  const english = new SpeechSynthesisUtterance(`Token ${spoken}, please come to counter ${counter}`);
  english.lang = "en-IN";
  window.speechSynthesis.speak(hindi);
  window.speechSynthesis.speak(english);
}

function tick() {
  const now = new Date();
  $("clock").textContent = now.toLocaleTimeString("en-IN", { hour: "2-digit", minute: "2-digit", timeZone: board.timezone });
  const stale = Date.now() - board.lastHeard > 2500 * board.intervalS;
  if (stale && document.body.dataset.state === "live") {
    setState("offline");
    if (socket) socket.close();          // a dead link: reconnect rather than wait
  }
}

setState("connecting");
connect();
setInterval(tick, 1000);
tick();
