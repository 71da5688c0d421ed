// The hall board: one substation's live channel, drawn for a waiting hall.
// Snapshot first, then deltas in order (a gap in `prev` means reconnect with `since`);
// "offline" when nothing arrives for 2.5 heartbeats. A called token is shown and announced,
// one call at a time, each for its full time; the board tells the server which voice it has.
"use strict";

const substation = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
document.getElementById("phone-qr").src = `/q/${encodeURIComponent(substation)}/qr.svg`;
const board = { seq: null, hall: null, nearby: [], online: null, intervalS: 5, lastHeard: 0, timezone: undefined };
let socket = null;
let retryMs = 1000;

const CALL_SHOWN_MS = 6000;        // each call's banner, however close the next call comes
const VOICE_WAIT_MS = 3000;        // voices may load late; after this, a chime until they do

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
  socket.onopen = () => reportVoice(socket);
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
    showClock();
  } else if (message.type === "delta") {
    if (board.seq !== null && message.prev !== board.seq) {   // missed one: resume from what we hold
      socket.close();
      return;
    }
    board.seq = message.seq;
    board.hall = message.hall;
    for (const event of message.events) {
      if (event.kind === "called" || event.kind === "recalled") queueCall(event);
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

// -- words ----------------------------------------------------------------------------------

function minutes(seconds) {
  return Math.max(0, Math.round(seconds / 60));
}

/** A wait in both languages, as one unbreakable value ("12–15 मिनट · min"); "no counter
    open" may break between its languages only. */
function waitText(estimate) {
  if (!estimate || estimate.p50_s === null) return { text: bilingual("काउंटर बंद", "no counter open"), none: true };
  const low = minutes(estimate.p50_s), high = Math.max(low, minutes(estimate.p90_s));
  if (high < 1) return { text: "तुरंत · now" };
  const range = low === high ? `${low}` : `${low}–${high}`;
  return { text: `${range} मिनट · min` };
}

const PRIORITY = { senior: ["वरिष्ठ", "Senior"], disabled: ["दिव्यांग", "Disabled"] };

/** What the hall calls a counter, from the hall JSON's names (never from the id's shape). */
function counterNames(counter) {
  const en = (counter && counter.name) || (counter && counter.id) || "";
  const hi = (counter && counter.name_hi) || en;
  return { en, hi, both: hi === en ? en : `${hi} · ${en}` };
}

function bilingual(hi, en) {
  const fragment = document.createDocumentFragment();
  const h = document.createElement("span");
  h.lang = "hi";
  h.textContent = hi;
  if (hi === en) {
    fragment.append(h);
    return fragment;
  }
  const e = document.createElement("span");
  e.lang = "en";
  e.textContent = en;
  fragment.append(h, " · ", e);
  return fragment;
}

/** A place's or service's names, Hindi then English, each kept whole. */
function names(hi, en) {
  return element("span", "names", bilingual(hi || en, en));
}

/** The paid service's names: from this hall, else from the snapshot (a hall that lacks it). */
function serviceNames(id) {
  const online = board.online;
  const named = board.hall.services.find((s) => s.id === id)
    || (online.payment_service_name && { name: online.payment_service_name, name_hi: online.payment_service_name_hi });
  return named ? bilingual(named.name_hi || named.name, named.name) : id;
}

function element(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.append(...children);
  return node;
}

// -- drawing --------------------------------------------------------------------------------

/** The scenario's paid service as this hall offers it, or null (a hall may not offer it). */
function paidService(hall) {
  const id = board.online && board.online.payment_service;
  return (id && hall.services.find((s) => s.id === id)) || null;
}

function render() {
  const hall = board.hall;
  if (!hall) return;
  $("name-hi").textContent = hall.name_hi || hall.name;
  $("name-en").textContent = hall.name;
  $("substation-id").textContent = hall.substation;
  const paid = paidService(hall);

  const counters = $("counters");
  const count = hall.counters.length;
  counters.dataset.size = count <= 1 ? "one" : count <= 4 ? "few" : count <= 8 ? "some" : "many";
  counters.replaceChildren(...hall.counters.map((counter) => {
    const item = element("li", "counter" + (counter.open ? "" : " closed"));
    item.dataset.counter = counter.id;
    const number = element("div", "number");
    if (!counter.open) {
      number.classList.add("idle");
      number.append(bilingual("बंद", "Closed"));
    } else if (counter.token) {
      number.textContent = counter.token.number;
    } else {
      number.classList.add("idle");
      number.append(bilingual("खाली", "Free"));
    }
    const names = counterNames(counter);
    item.append(element("div", "where", bilingual(names.hi, names.en)), number);
    if (flashing.has(counter.id)) item.classList.add("flash");
    return item;
  }));

  $("waiting-count").replaceChildren(`${hall.waiting} `, bilingual("प्रतीक्षा में", "waiting"));
  const services = paid ? [paid, ...hall.services.filter((s) => s !== paid)] : hall.services;
  $("services").replaceChildren(...services.map((service) => {
    const wait = waitText(service.estimate);
    const item = element("li", service === paid ? "paid" : "", names(service.name_hi, service.name),
                         element("span", "value" + (wait.none ? " none" : ""), wait.text));
    item.dataset.service = service.id;
    return item;
  }));

  $("next").replaceChildren(...hall.next.map((token) => {
    const number = element("span", "number", token.number);
    const left = element("span", "who", number);
    if (PRIORITY[token.priority]) {
      left.append(element("span", "prio", bilingual(...PRIORITY[token.priority])));
    }
    const item = element("li", "", left, element("span", "eta", waitText(token.estimate).text));
    item.dataset.number = token.number;
    return item;
  }));

  // Nearby substations' waits are for the paid service (the hub sends those).
  const service = board.online && board.online.payment_service;
  $("nearby-block").hidden = !service || !board.nearby || board.nearby.length === 0;
  $("nearby-service").replaceChildren(service ? serviceNames(service) : "");
  $("nearby").replaceChildren(...(board.nearby || []).map((other) => {
    const wait = waitText(other.estimate);
    const item = element("li", "", names(other.name_hi, other.name),
                         element("span", "value" + (wait.none ? " none" : ""),
                                 element("span", "km", `${other.distance_km} km`), element("span", "wait", wait.text)));
    item.dataset.substation = other.substation;
    return item;
  }));

  // The pay-online hint follows the paid service's wait; a hall without it shows none.
  const hint = $("online-hint");
  const long = Boolean(board.online && paid && paid.estimate && paid.estimate.p50_s !== null
    && paid.estimate.p50_s > board.online.hint_after_s);
  hint.hidden = !long;
  if (long) {
    $("online-hi").textContent = board.online.text_hi;
    $("online-en").textContent = ` ${board.online.text}`;
  }
  fit();
}

/** Show only the rows that fit whole: a row past the list's bottom edge is hidden, not cut. */
function fitRows(list) {
  const rows = [...list.children];
  for (const row of rows) row.classList.remove("unfit");
  const bottom = list.getBoundingClientRect().bottom + 0.5;
  let cut = false;
  for (const row of rows) {
    if (cut || row.getBoundingClientRect().bottom > bottom) {
      cut = true;
      row.classList.add("unfit");
    }
  }
  list.dataset.shown = String(rows.length - list.querySelectorAll(".unfit").length);
}

/** True when a section reaches past the bottom of the board (its fixed parts do not fit). */
function overflowing() {
  const main = document.querySelector("main");
  const limit = main.getBoundingClientRect().bottom - parseFloat(getComputedStyle(main).paddingBottom) + 0.5;
  return [...main.querySelectorAll("section")].some((section) =>
    section.offsetParent !== null && section.getBoundingClientRect().bottom > limit);
}

function fit() {
  document.body.classList.remove("compact");
  if (overflowing()) document.body.classList.add("compact");
  fitRows($("nearby"));
  fitRows($("next"));
}

// Whatever changes the room left (the screen, the header's voice sign, the hint, late fonts).
window.addEventListener("resize", fit);
if (document.fonts) document.fonts.ready.then(fit);
if ("ResizeObserver" in window) new ResizeObserver(() => fit()).observe(document.querySelector("main"));

// -- calls: one banner at a time, each for its full time -------------------------------------

const flashing = new Set();
const calls = [];
let showing = null;

function queueCall(event) {
  if (!event.token || !event.counter) return;
  calls.push(event);
  document.body.dataset.callsQueued = String(calls.length);
  if (!showing) showNextCall();
}

/** Still at its counter, called: a token the cashier has started serving needs no banner. */
function stillCalled(event) {
  const counter = board.hall && board.hall.counters.find((c) => c.id === event.counter);
  if (!counter) return true;
  return Boolean(counter.token && counter.token.number === event.token.number && counter.token.status === "called");
}

function showNextCall() {
  let event = calls.shift();
  while (event && !stillCalled(event)) event = calls.shift();
  document.body.dataset.callsQueued = String(calls.length);
  const banner = $("called-banner");
  if (!event) {
    showing = null;
    banner.hidden = true;
    delete banner.dataset.number;
    return;
  }
  showing = event;
  const counter = board.hall && board.hall.counters.find((c) => c.id === event.counter);
  const names = counterNames(counter || { id: event.counter });
  banner.replaceChildren(element("span", "called-number", event.token.number),
                         element("span", "counter-name", "→ ", bilingual(names.hi, names.en)));
  banner.dataset.number = event.token.number;
  banner.dataset.shownAt = String(Date.now());
  banner.hidden = false;
  flashing.add(event.counter);
  render();
  announce(event.token.number, names);
  setTimeout(() => {
    flashing.delete(event.counter);
    showNextCall();
    render();
  }, CALL_SHOWN_MS);
}

// -- voice: Hindi, else English, else a chime; the server (and so ops) is told which --------

const voice = { mode: null, hi: null, en: null };

function chooseVoices() {
  const voices = "speechSynthesis" in window ? window.speechSynthesis.getVoices() : [];
  const lang = (v) => (v.lang || "").toLowerCase().replace("_", "-");
  voice.hi = voices.find((v) => lang(v).startsWith("hi")) || null;
  voice.en = voices.find((v) => lang(v) === "en-in") || voices.find((v) => lang(v).startsWith("en")) || null;
  return voice.hi ? "hi" : voice.en ? "en" : voices.length ? "chime" : null;
}

function settleVoice(mode) {
  if (mode === voice.mode) return;
  voice.mode = mode;
  document.body.dataset.voice = mode;
  const sign = $("voice");
  sign.hidden = mode === "hi";
  const words = mode === "en" ? ["No Hindi voice", "हिंदी आवाज़ नहीं"]
    : mode === "chime" ? ["No voice: chime", "आवाज़ नहीं: घंटी"] : [];
  sign.replaceChildren(...words.map((text) => element("span", "", text)));
  fit();                                 // the sign takes room in the header
  reportVoice(socket);
}

function reportVoice(ws) {
  if (!voice.mode || !ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(JSON.stringify({ type: "board_status", v: 1, voice: voice.mode }));
}

function watchVoices() {
  const check = () => {
    const mode = chooseVoices();
    if (mode) settleVoice(mode);
  };
  if ("speechSynthesis" in window) window.speechSynthesis.onvoiceschanged = check;
  check();
  setTimeout(() => { if (!voice.mode) settleVoice(chooseVoices() || "chime"); }, VOICE_WAIT_MS);
}

function announce(number, names) {
  const spoken = number.replace("-", " ");
  const mode = voice.mode || chooseVoices() || "chime";
  if (mode === "chime") {
    chime();
    return;
  }
  window.speechSynthesis.cancel();       // the previous call's words are over: its time is up
  if (voice.hi) say(`टोकन ${spoken}, ${names.hi} पर आएँ`, voice.hi);
  if (voice.en) say(`Token ${spoken}, please come to ${names.en}`, voice.en);
}

function say(text, chosen) {
  const words = new SpeechSynthesisUtterance(text);
  words.lang = chosen.lang;
  try {
    words.voice = chosen;
  } catch (error) {
    // not a SpeechSynthesisVoice the engine knows: its language still picks one
  }
  window.speechSynthesis.speak(words);
}

let audio = null;

/** Two soft tones (Web Audio). A hall screen runs its browser with autoplay allowed
    (Chromium: --autoplay-policy=no-user-gesture-required), as it must for speech too. */
function chime() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return;
  audio = audio || new Context();
  if (audio.state === "suspended") audio.resume();
  const start = audio.currentTime + 0.05;
  [[880, 0], [660, 0.45]].forEach(([hz, offset]) => {
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.frequency.value = hz;
    gain.gain.setValueAtTime(0.0001, start + offset);
    gain.gain.exponentialRampToValueAtTime(0.4, start + offset + 0.03);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.8);
    tone.connect(gain).connect(audio.destination);
    tone.start(start + offset);
    tone.stop(start + offset + 0.85);
  });
  document.body.dataset.chimes = String(Number(document.body.dataset.chimes || 0) + 1);
}

// -- clock and link -------------------------------------------------------------------------

/** The hall's time, once the first snapshot has said its zone: never the browser's meanwhile. */
function showClock() {
  $("clock").textContent = board.timezone
    ? new Date().toLocaleTimeString("en-IN", { hour: "2-digit", minute: "2-digit", timeZone: board.timezone })
    : "--:--";
}

function tick() {
  showClock();
  const stale = Date.now() - board.lastHeard > 2500 * board.intervalS;
  if (stale && document.body.dataset.state === "live") {
    setState("offline");
    if (socket) socket.close();          // a dead link: reconnect rather than wait
  }
}

setState("connecting");
watchVoices();
connect();
setInterval(tick, 1000);
tick();
