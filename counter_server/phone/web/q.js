// The consumers' phone page. One page for three URLs, read from location.pathname:
//   /q          pick a substation (shortest wait first; pay online on top when waits are long)
//   /q/{sid}    take a token now, or (#slots) book a slot on a quieter day
//   /q/t/{tid}  follow the token live over a WebSocket; leave-home advice; an SMS when near; cancel
// Every label is in Hindi and English. No framework, no inline styles (the CSP forbids them).
"use strict";

const TRAVEL_KEY = "q-travel-min";
const SERVICE_KEY = "q-service";
const TOKEN_KEY = "q-token";
const STALE_MS = 15000;
const $ = (id) => document.getElementById(id);

const saved = {
  get(key) { try { return localStorage.getItem(key); } catch (e) { return null; } },
  set(key, value) { try { localStorage.setItem(key, value); } catch (e) { /* private mode */ } },
  drop(key) { try { localStorage.removeItem(key); } catch (e) { /* private mode */ } },
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "click") node.addEventListener("click", value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
}
// "हिंदी · English": Hindi first, English after it (stacked inside a .two element).
const bi = (hi, en) => [el("span", { lang: "hi", text: hi }), " ", el("span", { lang: "en", text: en })];

// The trips a consumer may choose, on the form and on the token screen alike.
const TRIP_MINUTES = [5, 10, 15, 20, 30, 45, 60, 90];
for (const id of ["trip", "travel"]) {
  $(id).append(...TRIP_MINUTES.map((m) => el("option", { value: String(m), text: `${m} मिनट · ${m} min` })));
}

function show(screen) {
  document.body.dataset.screen = screen;
  $("loading").hidden = true;
  for (const name of ["list", "take", "slots", "token"]) $(`s-${name}`).hidden = name !== screen;
}

// ---- words for numbers and times ---------------------------------------------------------

const minutes = (seconds) => Math.max(0, Math.round(seconds / 60));

function waitWords(estimate) {
  if (!estimate || estimate.p50_s === null || estimate.p50_s === undefined) return null;
  const low = minutes(estimate.p50_s);
  const high = Math.max(low, minutes(estimate.p90_s === null ? estimate.p50_s : estimate.p90_s));
  if (high < 1) return { hi: "कोई इंतज़ार नहीं", en: "no wait", short: "कोई इंतज़ार नहीं · no wait" };
  const range = low === high ? `${low}` : `${low}–${high}`;
  return { hi: `${range} मिनट`, en: `${range} min`, range, short: `${range} मिनट · min` };
}

function format(locale, options, date) {
  try {
    return new Intl.DateTimeFormat(locale, { timeZone: "UTC", ...options }).format(date);
  } catch (e) {
    return null;
  }
}

// "HH:MM" where the substation is: the server's ISO strings carry the scenario's own offset.
function hhmm(iso) {
  return iso ? iso.slice(11, 16) : "";
}

// A calendar day's names (YYYY-MM-DD), the same in any time zone: noon UTC of that date.
function dayWords(day) {
  const date = new Date(`${day}T12:00:00Z`);
  return {
    hiDay: format("hi-IN", { weekday: "short" }, date) || "",
    enDay: format("en-GB", { weekday: "short" }, date) || "",
    hiDate: format("hi-IN", { day: "numeric", month: "short" }, date) || day,
    enDate: format("en-GB", { day: "numeric", month: "short" }, date) || day,
  };
}

// ---- talking to the server ---------------------------------------------------------------

function uuid() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();   // secure contexts only
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function call(method, path, body, idempotencyKey) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  const resp = await fetch(path, { method, headers, cache: "no-store",
                                   body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  return { status: resp.status, data };
}

// One attempt = one Idempotency-Key: a lost answer is retried (automatically, then by tapping
// again) with the same key, so a slow link never takes two tokens. A changed form is a new attempt.
let attempt = null;

async function send(path, body) {
  const text = `${path}\n${JSON.stringify(body)}`;
  if (!attempt || attempt.text !== text) attempt = { text, key: uuid() };
  for (let tries = 0; ; tries++) {
    try {
      const answer = await call("POST", path, body, attempt.key);
      if (answer.status < 500) attempt = null;
      return answer;
    } catch (e) {
      if (tries >= 2) return { status: 0, data: null };
      await sleep(1000 * 2 ** tries);
    }
  }
}

// ---- the alert area ------------------------------------------------------------------------

const HINDI = {
  already_holding: "इस खाते या मोबाइल नंबर पर पहले से एक टोकन चालू है।",
  cannot_serve_today: "आज इस केंद्र पर और टोकन नहीं दिए जा सकते — काउंटर बंद होने से पहले बारी नहीं आएगी।",
  "cannot_serve_today:daily_cap": "आज इस केंद्र के सारे टोकन दिए जा चुके हैं।",
  "cannot_serve_today:closed": "आज के लिए काउंटर बंद हो चुके हैं।",
  "cannot_serve_today:closed_day": "आज यह केंद्र बंद है।",
  rate_limited: "इस कनेक्शन से बहुत टोकन लिए गए हैं; थोड़ी देर बाद फिर कोशिश करें।",
  slot_unavailable: "यह समय अब उपलब्ध नहीं है; दूसरा समय चुनें।",
  token_not_found: "यह टोकन नहीं मिला।",
  substation_not_found: "यह केंद्र नहीं मिला।",
  sms_unavailable: "अभी यहाँ से SMS नहीं भेजे जा रहे; यह पेज खुला रखें।",
};
const FIELD_HINDI = {
  account: "खाता संख्या सही नहीं है — बिल पर लिखी संख्या भरें।",
  phone: "मोबाइल नंबर सही नहीं है — 10 अंक भरें।",
  mobile: "मोबाइल नंबर सही नहीं है — 10 से 15 अंक भरें।",
};

function showAlert(hi, en, ...extra) {
  const box = $("alert");
  box.replaceChildren(el("p", { lang: "hi", text: hi }), el("p", { lang: "en", class: "en", text: en }), ...extra);
  box.hidden = false;
  box.scrollIntoView({ block: "center" });
  box.focus({ preventScroll: true });
}

function clearAlert() {
  $("alert").hidden = true;
  $("alert").replaceChildren();
}

function showError(answer, ...extra) {
  if (answer.status === 0) {
    showAlert("नेटवर्क नहीं मिल रहा। दोबारा दबाएँ — एक ही टोकन बनेगा।",
              "No network. Tap again: you will still get only one token.", ...extra);
    return;
  }
  const error = (answer.data && answer.data.error) || {};
  const hi = HINDI[`${error.code}:${error.reason}`] || HINDI[error.code] || FIELD_HINDI[error.field] ||
    (answer.status >= 500 ? "सर्वर में दिक्कत है; थोड़ी देर बाद फिर कोशिश करें।" : "कुछ गड़बड़ हुई; फिर कोशिश करें।");
  showAlert(hi, error.message || `Something went wrong (${answer.status}).`, ...extra);
}

// ---- /q: pick a substation ---------------------------------------------------------------

async function loadStations() {
  try {
    const answer = await call("GET", "/api/v1/public/substations");
    if (answer.status === 200) return answer.data;
    showError(answer);
  } catch (e) {
    showError({ status: 0 });
  }
  return null;
}

function retryButton() {
  return el("button", { type: "button", class: "plain two", click: () => location.reload() },
            bi("फिर कोशिश करें", "Try again"));
}

// ---- what one substation offers for one service, in words ----------------------------------

// Every service any substation offers, in the order they are listed.
function allServices(listing) {
  const seen = new Map();
  for (const s of listing.substations) for (const service of s.services) if (!seen.has(service.id)) seen.set(service.id, service);
  return [...seen.values()];
}

// The service a consumer looks for: the one asked for or remembered, else the paid service.
function pickService(listing, wanted) {
  const ids = allServices(listing).map((s) => s.id);
  for (const id of [wanted, saved.get(SERVICE_KEY), listing.payment_service]) if (id && ids.includes(id)) return id;
  return ids[0] || null;
}

// One substation for one service: the truth a card says, in this order of precedence.
function standing(s, serviceId) {
  const service = s.services.find((x) => x.id === serviceId) || null;
  if (!service) return { state: "not_offered", service: null, side: ["यह सेवा नहीं", "not offered here"] };
  if (s.open_today === false) return { state: "closed_today", service, side: ["आज बंद", "closed today"] };
  if (!s.in_hours) return { state: "after_hours", service, side: ["अभी बंद", "closed now"] };
  if (s.counters_open === 0) return { state: "counters_closed", service, side: ["काउंटर बंद", "counters closed"] };
  if (service.open_counters === 0) return { state: "service_closed", service, side: ["इस सेवा का काउंटर बंद", "no counter for it now"] };
  const wait = waitWords(service.estimate);
  return wait ? { state: "open", service, wait, side: [wait.hi, wait.en] }
    : { state: "unknown", service, side: ["–", "wait unknown"] };
}

// The card's small print, Hindi over English: what the count counts, and the hours said so
// that they never contradict the wait beside them.
function metaWords(s, st) {
  const hours = `${s.opens}–${s.closes}`;
  if (st.state === "closed_today") {
    const when = s.opens_on ? dayWords(s.opens_on) : null;
    return when ? { hi: `${when.hiDay}, ${when.hiDate} ${s.opens} बजे खुलेगा`, en: `opens ${when.enDay} ${when.enDate} ${s.opens}` }
      : { hi: "बंद", en: "closed" };
  }
  if (st.state === "not_offered") {
    return { hi: `यहाँ: ${s.services.map((x) => x.name_hi || x.name).join(", ")}`,
             en: `offers ${s.services.map((x) => x.name).join(", ")}` };
  }
  const service = st.service;
  const hi = [`${service.name_hi || service.name} के लिए ${service.waiting} प्रतीक्षा में`];
  const en = [`${service.waiting} waiting for ${service.name}`];
  if (st.state === "after_hours") {
    hi.push(`समय ${hours}`);
    en.push(`hours ${hours}`);
  } else if (st.state === "counters_closed") {
    hi.push(`अभी कोई काउंटर खुला नहीं (समय ${hours})`);
    en.push(`no counter open now (hours ${hours})`);
  } else if (st.state === "service_closed") {
    hi.push(`इस सेवा का कोई काउंटर खुला नहीं`);
    en.push(`no counter open for it now`);
  } else {
    if (s.counters_open < s.counters) {
      hi.push(`${s.counters} में से ${s.counters_open} काउंटर खुले`);
      en.push(`${s.counters_open} of ${s.counters} counters open`);
    }
    hi.push(`${s.closes} तक`);
    en.push(`till ${s.closes}`);
  }
  return { hi: hi.join(" · "), en: en.join(" · ") };
}

const metaLines = (words) => [el("span", { lang: "hi", text: words.hi }), el("span", { lang: "en", text: words.en })];

function stationCard(s, serviceId) {
  const st = standing(s, serviceId);
  const href = `/q/${encodeURIComponent(s.id)}${st.service ? `?service=${encodeURIComponent(st.service.id)}` : ""}`;
  return el("li", {},
    el("a", { class: `station${st.state === "open" ? "" : " closed"}`, href, "data-substation": s.id, "data-state": st.state },
      el("span", { class: "names" }, el("b", { lang: "hi", text: s.name_hi || s.name }), el("span", { lang: "en", text: s.name })),
      el("span", { class: "wait" }, el("span", { text: st.side[0] }), el("span", { class: "en", text: st.side[1] })),
      el("span", { class: "meta" }, metaLines(metaWords(s, st)))));
}

// Shortest wait for the chosen service first; then halls shut for it; then those without it.
function byWait(serviceId) {
  const rank = { open: 0, unknown: 1, service_closed: 2, counters_closed: 2, after_hours: 3, closed_today: 4, not_offered: 5 };
  return (a, b) => {
    const x = standing(a, serviceId);
    const y = standing(b, serviceId);
    const p50 = (st) => (st.service && st.service.estimate && st.service.estimate.p50_s) || 0;
    return rank[x.state] - rank[y.state] || p50(x) - p50(y) || a.id.localeCompare(b.id);
  };
}

async function listScreen() {
  show("list");
  const mine = readMine();
  if (mine) {
    $("mine").href = mine.url;
    $("mine-number").textContent = mine.number || "";
    $("mine").hidden = false;
  }
  const answer = await loadStations();
  if (!answer) {
    $("alert").append(retryButton());
    return;
  }
  if (answer.online && answer.online.suggest) {
    $("online-hi").textContent = answer.online.text_hi;
    $("online-en").textContent = answer.online.text;
    $("online").hidden = false;
  }
  const services = allServices(answer);
  let chosen = pickService(answer, new URLSearchParams(location.search).get("service"));
  const render = () => {
    const service = services.find((x) => x.id === chosen);
    $("list-for").replaceChildren(...(service ? bi(`${service.name_hi || service.name} का सबसे कम इंतज़ार पहले`,
                                                   `Shortest wait for ${service.name} first`) : []));
    $("stations").replaceChildren(...[...answer.substations].sort(byWait(chosen)).map((s) => stationCard(s, chosen)));
  };
  $("list-services").hidden = services.length < 2;
  $("list-services").replaceChildren(...services.map((service) => el("label", { class: "chip" },
    el("input", { type: "radio", name: "list-service", value: service.id, checked: service.id === chosen }),
    el("span", { class: "two" }, bi(service.name_hi || service.name, service.name)))));
  $("list-services").addEventListener("change", (event) => {
    chosen = event.target.value;
    saved.set(SERVICE_KEY, chosen);
    render();
  });
  render();
}

function readMine() {
  try {
    const mine = JSON.parse(saved.get(TOKEN_KEY) || "null");
    return mine && typeof mine.url === "string" && mine.url.startsWith("/q/t/") ? mine : null;
  } catch (e) {
    return null;
  }
}

// ---- /q/{sid}: take a token or book a slot -------------------------------------------------

const take = { sid: null, station: null, listing: null, slots: null, day: null, slot: null };

const ACCOUNT = /^[0-9A-Za-z-]{4,24}$/;
const PHONE = /^(\+91|91|0)?[0-9]{10}$/;

function markField(name, bad) {
  const input = $(name);
  input.classList.toggle("bad", bad);
  if (bad) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
  $(`${name}-err`).hidden = !bad;
}

function chosenService() {
  const checked = document.querySelector("input[name=service]:checked");
  return checked ? checked.value : null;
}

// The trip asked before a token is taken (remembered on this phone), in minutes; null: not said.
function tripMinutes() {
  const value = $("trip").value;
  return value === "" ? null : Number(value);
}

// The form's values, or null with the wrong fields marked (and the first focused). A token
// taken now needs the trip too: it decides whether taking one now is wise.
function formBody(needTrip) {
  const account = $("account").value.trim();
  const phone = $("phone").value.trim();
  const service = chosenService();
  const bad = {
    service: service === null,
    trip: Boolean(needTrip) && tripMinutes() === null,
    account: !ACCOUNT.test(account),
    phone: !PHONE.test(phone.replace(/[\s-]/g, "")),
  };
  $("services").classList.toggle("bad", bad.service);
  $("service-err").hidden = !bad.service;
  for (const name of ["trip", "account", "phone"]) markField(name, bad[name]);
  const first = ["trip", "account", "phone"].find((name) => bad[name]);
  if (bad.service || first) {
    showAlert("कृपया लाल रंग वाले खाने ठीक करें।", "Please correct the fields marked in red.");
    if (bad.service) document.querySelector("input[name=service]").focus();
    else $(first).focus();
    return null;
  }
  return { service, account, phone };
}

function tookToken(answer) {
  const token = answer.data.token;
  saved.set(TOKEN_KEY, JSON.stringify({ url: answer.data.url, number: token.number || hhmm(token.slot_at) }));
  location.assign(answer.data.url);
}

function busy(button, on) {
  button.disabled = on;
  button.classList.toggle("busy", on);
}

async function stationScreen(sid) {
  take.sid = sid;
  show(location.hash === "#slots" ? "slots" : "take");
  window.addEventListener("hashchange", route);
  $("form").addEventListener("submit", (event) => { event.preventDefault(); takeToken(); });
  $("to-slots").addEventListener("click", () => { if (formBody()) openSlots(); });
  $("slots-back").addEventListener("click", (event) => { event.preventDefault(); toForm(); });
  $("book").addEventListener("click", bookSlot);
  for (const name of ["account", "phone"]) $(name).addEventListener("input", () => markField(name, false));
  const remembered = saved.get(TRAVEL_KEY);
  if ([...$("trip").options].some((o) => o.value === remembered && remembered !== "")) $("trip").value = remembered;
  $("trip").addEventListener("change", () => {
    markField("trip", false);
    if (tripMinutes() !== null) saved.set(TRAVEL_KEY, $("trip").value);
    renderWait();
  });
  const answer = await loadStations();
  const station = answer && answer.substations.find((s) => s.id === sid);
  if (!station) {
    if (answer) showAlert(HINDI.substation_not_found, "No such substation.");
    return;
  }
  take.station = station;
  take.listing = answer;
  document.title = `${station.name_hi} · ${station.name} — टोकन · Token`;
  $("st-hi").textContent = station.name_hi || station.name;
  $("st-en").textContent = station.name;
  $("take").hidden = station.open_today === false;   // a slot on an open day is still offered
  const ids = station.services.map((service) => service.id);
  const wanted = new URLSearchParams(location.search).get("service");
  const initial = [wanted, saved.get(SERVICE_KEY), station.default_service].find((id) => id && ids.includes(id))
    || (ids.length === 1 ? ids[0] : null);
  $("services").append(...station.services.map((service) => el("label", { class: "choice" },
    el("input", { type: "radio", name: "service", value: service.id, checked: service.id === initial }),
    el("span", { class: "two" }, bi(service.name_hi || service.name, service.name)))));
  $("services").addEventListener("change", () => {
    $("services").classList.remove("bad");
    $("service-err").hidden = true;
    saved.set(SERVICE_KEY, chosenService());
    renderWait();
  });
  renderWait();
  if (location.hash === "#slots") openSlots(true);
}

// The wait card says the wait of the service chosen, in the words the list uses.
function renderWait() {
  const station = take.station;
  if (!station) return;
  const id = chosenService();
  const st = id ? standing(station, id) : null;
  $("wait-for").replaceChildren(...(st
    ? bi(`${st.service.name_hi || st.service.name}: अभी टोकन लें तो इंतज़ार`, `${st.service.name}: wait if you take a token now`)
    : bi("इंतज़ार देखने के लिए सेवा चुनें", "Choose a service to see its wait")));
  $("st-wait").textContent = !st ? "–" : st.state === "open" ? st.wait.short : `${st.side[0]} · ${st.side[1]}`;
  $("st-meta").replaceChildren(...(st ? metaLines(metaWords(station, st)) : []));
  renderAdvice(st);
}

// A trip longer than the likely wait: a token taken now is called before its holder arrives.
// Say so, and offer what fits: a slot after the arrival, or a substation with a longer line.
async function renderAdvice(st) {
  const box = $("trip-advice");
  const trip = tripMinutes();
  const likely = st && st.state === "open" ? minutes(st.service.estimate.p50_s) : null;
  if (trip === null || likely === null || trip <= likely) {
    box.hidden = true;
    box.replaceChildren();
    box.dataset.key = "";
    return;
  }
  const key = `${st.service.id}:${trip}:${likely}`;
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  const service = st.service;
  // Other halls where a token taken now is likely called after the trip: the line fits it.
  const others = take.listing.substations
    .filter((s) => s.id !== take.sid && standing(s, service.id).state === "open"
                   && minutes(standing(s, service.id).service.estimate.p50_s) >= trip)
    .sort(byWait(service.id)).slice(0, 3);
  box.replaceChildren(
    el("p", { class: "two", id: "advice-why" },
       bi(`आपका रास्ता (${trip} मिनट) यहाँ के इंतज़ार (${st.wait.hi}) से लंबा है: अभी टोकन लेंगे तो आपके पहुँचने से पहले बुलावा आ जाएगा।`,
          `Your trip (${trip} min) is longer than the likely wait here (${st.wait.en}): a token taken now is likely called before you arrive.`)),
    el("p", { class: "two small" },
       bi(`अभी निकलें और पहुँचने से लगभग ${Math.max(1, likely)} मिनट पहले टोकन लें, या:`,
          `Set off now and take the token when you are about ${Math.max(1, likely)} min away, or:`)),
    el("div", { id: "advice-slot" }),
    others.length ? el("h2", { class: "two" }, bi(`दूसरे केंद्र जहाँ आप बारी से पहले पहुँचेंगे (${service.name_hi || service.name})`,
                                                  `Other substations where you arrive before your turn (${service.name})`)) : null,
    others.length ? el("ul", { class: "alts", id: "advice-others" }, others.map((s) => {
      const other = standing(s, service.id);
      return el("li", {}, el("a", { href: `/q/${encodeURIComponent(s.id)}?service=${encodeURIComponent(service.id)}`, "data-substation": s.id },
        el("b", { class: "two" }, bi(s.name_hi || s.name, s.name)),
        el("span", { class: "muted", text: other.wait.short })));
    })) : null);
  box.hidden = false;
  const slot = await slotAfterArrival(trip);
  if (box.dataset.key !== key || !slot) return;
  const words = dayWords(slot.day);
  const today = slot.day === take.slots.today;
  box.querySelector("#advice-slot").replaceChildren(el("button", {
    type: "button", class: "secondary two", id: "advice-book", "data-at": slot.at,
    click: () => { if (!formBody()) return; take.day = slot.day; take.slot = slot.at; openSlots(); },
  }, bi(`${today ? "आज" : `${words.hiDay}, ${words.hiDate}`} ${hhmm(slot.at)} बजे का समय बुक करें (पहुँचने के बाद)`,
        `Book a slot ${today ? "today" : `on ${words.enDay} ${words.enDate}`} at ${hhmm(slot.at)} (after you arrive)`)));
}

// The first free slot that starts after a trip begun now would arrive.
async function slotAfterArrival(trip) {
  if (!take.slots) {
    try {
      const answer = await call("GET", `/api/v1/public/substations/${encodeURIComponent(take.sid)}/slots`);
      if (answer.status !== 200) return null;
      take.slots = answer.data;
    } catch (e) {
      return null;
    }
  }
  const arrive = Date.parse(take.slots.now) + trip * 60_000;   // the server's clock, not the phone's
  for (const day of take.slots.days) {
    const slot = day.slots.find((x) => x.free > 0 && Date.parse(x.at) >= arrive);
    if (slot) return { day: day.day, at: slot.at };
  }
  return null;
}

function route() {
  if (location.hash === "#slots") {
    show("slots");
    loadSlots();
  } else {
    show("take");
  }
  renderForWhom();
}

function openSlots(already) {
  clearAlert();
  if (!already && location.hash !== "#slots") {
    take.pushed = true;
    location.hash = "slots";   // the phone's Back button comes back to the form
  } else {
    route();
  }
}

function toForm() {
  if (location.hash !== "#slots") return;
  if (take.pushed) {
    take.pushed = false;
    history.back();
  } else {
    history.replaceState(null, "", location.pathname + location.search);
    route();
  }
}

async function takeToken() {
  clearAlert();
  $("refusal").hidden = true;
  const body = formBody(true);
  if (!body) return;
  busy($("take"), true);
  const answer = await send(`/api/v1/public/substations/${encodeURIComponent(take.sid)}/tokens`, body);
  busy($("take"), false);
  if (answer.status === 201) return tookToken(answer);
  refused(answer);
}

// Any refusal: say it in words, mark the field, and offer what the server offers instead.
function refused(answer) {
  const error = (answer.data && answer.data.error) || {};
  const extra = [];
  if (error.field === "account" || error.field === "phone") {
    markField(error.field, true);
    toForm();
    setTimeout(() => $(error.field).focus(), 0);
  }
  if (error.code === "already_holding" && error.token) {
    extra.push(el("a", { class: "plain two", href: `/q/t/${encodeURIComponent(error.token)}`, id: "existing" },
                  bi("अपना चालू टोकन देखें", "See the token you already have")));
  }
  showError(answer, ...extra);
  if (error.code === "cannot_serve_today") showRefusal(error);
}

function showRefusal(error) {
  const box = $("refusal");
  const parts = [];
  if (error.online) {
    parts.push(el("div", { class: "card online" }, el("p", { lang: "hi", text: error.online.text_hi }),
                  el("p", { lang: "en", id: "online-en-r", text: error.online.text })));
  }
  if (error.booking && error.booking.length) {
    const first = error.booking[0];
    parts.push(el("button", { type: "button", class: "primary two", id: "refusal-book", click: () => openSlots() },
      bi(`कम भीड़ वाले दिन का समय बुक करें (${dayWords(first.day).hiDate} से)`,
         `Book a slot on a quieter day (from ${dayWords(first.day).enDate})`)));
  }
  if (error.alternatives && error.alternatives.length) {
    parts.push(el("h2", { class: "two" }, bi("पास के दूसरे केंद्र", "Other substations nearby")));
    parts.push(el("ul", { class: "alts" }, error.alternatives.map((alt) => {
      const wait = waitWords(alt.estimate);
      return el("li", {}, el("a", { href: `/q/${encodeURIComponent(alt.substation)}` },
        el("b", { class: "two" }, bi(alt.name_hi || alt.name, alt.name)),
        el("span", { class: "muted", text: `${alt.distance_km} km${wait ? ` · ${wait.short}` : ""}` })));
    })));
  }
  box.replaceChildren(...parts);
  box.hidden = parts.length === 0;
}

// ---- the slot screen -------------------------------------------------------------------------

function renderForWhom() {
  const account = $("account").value.trim();
  $("slots-for").textContent = account.length >= 4
    ? `खाता · Account ••••${account.slice(-4)}${take.station ? ` · ${take.station.name_hi} · ${take.station.name}` : ""}`
    : "";
}

async function loadSlots() {
  $("days").replaceChildren(el("p", { class: "muted" }, bi("लोड हो रहा है…", "Loading…")));
  $("slots").replaceChildren();
  let answer;
  try {
    answer = await call("GET", `/api/v1/public/substations/${encodeURIComponent(take.sid)}/slots`);
  } catch (e) {
    answer = { status: 0 };
  }
  if (answer.status !== 200) {
    showError(answer, retryButton());
    $("days").replaceChildren();
    return;
  }
  take.slots = answer.data;
  const days = take.slots.days;
  const still = days.find((d) => d.day === take.day && d.free > 0);
  if (!still) {
    const quiet = days.find((d) => d.day === take.slots.recommended) || days.find((d) => d.free > 0);
    take.day = quiet ? quiet.day : null;
  }
  const day = days.find((d) => d.day === take.day);
  if (!day || !day.slots.some((slot) => slot.at === take.slot && slot.free > 0)) take.slot = null;
  renderDays();
}

function renderDays() {
  const recommended = take.slots.recommended;
  $("days").replaceChildren(...take.slots.days.map((d) => {
    const words = dayWords(d.day);
    const tag = d.month_end ? bi("भीड़", "Rush") : d.day === recommended ? bi("सुझाव", "Best") : null;
    const button = el("button", {
      type: "button", "data-day": d.day, "aria-pressed": String(d.day === take.day), disabled: d.free <= 0,
      class: `day${d.month_end ? " rush" : ""}${d.day === recommended ? " rec" : ""}`,
      click: () => { take.day = d.day; take.slot = null; clearAlert(); renderDays(); },
    },
    el("span", { text: `${words.hiDay} · ${words.enDay}` }),
    el("span", { class: "d", text: words.enDate }),
    tag ? el("span", { class: "tag" }, tag) : null,
    el("span", { class: "free", text: d.slots.length ? `${d.free} खाली · free` : "बंद · closed" }));
    return button;
  }));
  const chosen = $("days").querySelector("[aria-pressed=true]");
  if (chosen) chosen.scrollIntoView({ block: "nearest", inline: "center" });
  renderSlots();
}

function renderSlots() {
  const day = take.slots.days.find((d) => d.day === take.day);
  const note = $("day-note");
  note.hidden = !day || !(day.month_end || day.day === take.slots.recommended);
  if (day && day.month_end) {
    note.className = "day-note rush";
    note.replaceChildren(...bi("महीने के अंत की भीड़", "Month-end rush: long lines, few places"));
  } else if (day) {
    note.className = "day-note rec";
    note.replaceChildren(...bi("सुझाया गया", "Recommended: short lines"));
  }
  if (!day) {
    $("slots").replaceChildren(el("p", { class: "muted" }, bi("कोई समय खाली नहीं", "No free slots")));
  } else {
    $("slots").replaceChildren(...day.slots.map((slot) => el("button", {
      type: "button", class: "slot", "data-at": slot.at, disabled: slot.free <= 0,
      "aria-pressed": String(slot.at === take.slot),
      click: () => { take.slot = slot.at; renderSlots(); },
    }, el("b", { text: hhmm(slot.at) }),
    el("span", { text: slot.free > 0 ? `${slot.free} खाली · free` : "भरा · full" }))));
  }
  const book = $("book");
  book.disabled = !take.slot;
  if (take.slot) {
    const words = dayWords(take.day);
    book.replaceChildren(...bi(`${words.hiDate}, ${hhmm(take.slot)} बुक करें`, `Book ${words.enDate}, ${hhmm(take.slot)}`));
  } else {
    book.replaceChildren(...bi("समय चुनें", "Choose a time"));
  }
}

async function bookSlot() {
  clearAlert();
  const body = formBody();
  if (!body || !take.slot) {
    if (!body) toForm();
    return;
  }
  busy($("book"), true);
  const answer = await send(`/api/v1/public/substations/${encodeURIComponent(take.sid)}/bookings`,
                            { ...body, slot_at: take.slot });
  busy($("book"), false);
  if (answer.status === 201) return tookToken(answer);
  refused(answer);
  if ((answer.data && answer.data.error || {}).code === "slot_unavailable") loadSlots();
}

// ---- /q/t/{tid}: the token ---------------------------------------------------------------

const STATUS = {
  booked: ["समय बुक है", "Slot booked"],
  waiting: ["प्रतीक्षा में", "Waiting"],
  called: ["बुलाया गया", "Called"],
  serving: ["सेवा जारी", "Being served"],
  done: ["पूरा हुआ", "Done"],
  cancelled: ["रद्द", "Cancelled"],
  no_show: ["अनुपस्थित", "No-show"],
  closed_unserved: ["सेवा नहीं हो सकी", "Not served"],
};
const FINAL = ["done", "cancelled", "no_show", "closed_unserved"];
const live = { tid: null, socket: null, retryMs: 1000, timer: null, heard: 0, token: null, alerted: "", stopped: false };

// The trip this phone said (on the form or here); null: the server uses the scenario's.
function travelMinutes() {
  const value = saved.get(TRAVEL_KEY);
  return [...$("travel").options].some((o) => o.value === value) ? value : null;
}

const travelQuery = () => (travelMinutes() === null ? "" : `?travel_min=${travelMinutes()}`);

// What the hall board calls the counter ("Counter 1", "Window A"); a counter without a name of
// its own is "counter <id>".
function counterWords(t) {
  const en = t.counter_name || t.counter;
  const hi = t.counter_name_hi || en;
  return en === t.counter ? { hi: `काउंटर ${t.counter}`, en: `counter ${t.counter}` } : { hi, en };
}

async function tokenScreen(tid) {
  live.tid = tid;
  show("token");
  if (travelMinutes() !== null) $("travel").value = travelMinutes();
  $("travel").addEventListener("change", () => { saved.set(TRAVEL_KEY, $("travel").value); reconnect(); });
  $("cancel").addEventListener("click", cancelToken);
  $("sms-ask").addEventListener("submit", askSms);
  $("sms-stop").addEventListener("click", stopSms);
  $("sms-mobile").addEventListener("input", () => smsError(null));
  loadSms();
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !live.stopped && !live.socket) reconnect();
  });
  setInterval(watchLink, 1000);
  setLink("connecting");
  try {
    const answer = await call("GET", `/api/v1/public/tokens/${encodeURIComponent(tid)}${travelQuery()}`);
    if (answer.status === 404) {
      live.stopped = true;
      $("link").hidden = true;
      if (readMine() && readMine().url === location.pathname) saved.drop(TOKEN_KEY);
      showError(answer, el("a", { class: "plain two", href: "/q" }, bi("नया टोकन लें", "Take a new token")));
      $("s-token").hidden = true;
      return;
    }
    if (answer.status === 200) renderToken(answer.data.token);
  } catch (e) {
    setLink("offline");
  }
  connect();
}

function connect() {
  if (live.stopped) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/v1/public/tokens/${encodeURIComponent(live.tid)}/live` +
                               travelQuery());
  live.socket = socket;
  live.heard = Date.now();
  socket.onmessage = (event) => {
    if (live.socket !== socket) return;
    let message;
    try { message = JSON.parse(event.data); } catch (e) { return; }
    live.heard = Date.now();
    live.retryMs = 1000;
    setLink("live");
    if (message.type === "token" && message.token) renderToken(message.token);
  };
  socket.onclose = () => {
    if (live.socket !== socket) return;
    live.socket = null;
    if (live.stopped) return;
    setLink("offline");
    const wait = Math.min(15000, live.retryMs) * (0.5 + Math.random());   // backoff with jitter
    live.retryMs = Math.min(15000, live.retryMs * 2);
    clearTimeout(live.timer);
    live.timer = setTimeout(connect, wait);
  };
}

function reconnect() {
  clearTimeout(live.timer);
  live.retryMs = 1000;
  const old = live.socket;
  live.socket = null;
  if (old) old.close();
  setLink("connecting");
  connect();
}

// Nothing heard for 15 s (heartbeats come every few seconds): the link is dead; say so, redial.
function watchLink() {
  if (live.socket && Date.now() - live.heard > STALE_MS) {
    const old = live.socket;
    live.socket = null;
    old.close();
    setLink("offline");
    live.timer = setTimeout(connect, Math.min(15000, live.retryMs));
    live.retryMs = Math.min(15000, live.retryMs * 2);
  }
}

function setLink(state) {
  document.body.dataset.link = state;
  const link = $("link");
  link.hidden = live.stopped;
  link.className = state === "live" ? "link" : "link off";
  link.textContent = state === "live" ? "● लाइव · Live" : state === "offline" ? "ऑफ़लाइन · Offline" : "जुड़ रहा है · Connecting";
  $("offline").hidden = state !== "offline" || live.stopped;
}

function renderToken(t) {
  live.token = t;
  const final = FINAL.includes(t.status);
  const booked = t.status === "booked";
  document.body.dataset.status = t.status;
  if (final) {
    if (readMine() && readMine().url === location.pathname) saved.drop(TOKEN_KEY);
  } else {
    saved.set(TOKEN_KEY, JSON.stringify({ url: location.pathname, number: t.number || hhmm(t.slot_at) }));
  }
  if (["done", "cancelled", "closed_unserved"].includes(t.status)) {   // nothing more will change: hang up
    live.stopped = true;
    clearTimeout(live.timer);
    if (live.socket) { const old = live.socket; live.socket = null; old.close(); }
    $("link").hidden = true;
    $("offline").hidden = true;
  }

  $("t-label").replaceChildren(...(booked ? bi("आपका समय", "Your slot") : bi("आपका टोकन नंबर", "Your token number")));
  const number = $("t-number");
  number.textContent = booked ? hhmm(t.slot_at) : (t.number || "–");
  number.classList.toggle("time", booked);
  $("t-status").replaceChildren(...bi(...(STATUS[t.status] || [t.status, t.status])));
  $("t-station").replaceChildren(...bi(t.substation.name_hi || t.substation.name, t.substation.name));
  $("t-service").textContent = `${t.service.name_hi} · ${t.service.name}`;
  $("t-account").textContent = t.account || "–";
  $("t-ahead").textContent = t.ahead === null || t.ahead === undefined ? "–" : String(t.ahead);
  const wait = waitWords(t.estimate);
  if (wait && wait.range) $("t-wait").replaceChildren(wait.range, el("span", { class: "unit", text: "मिनट · min" }));
  else $("t-wait").textContent = wait ? wait.short : "–";
  $("f-ahead").hidden = $("f-wait").hidden = t.status !== "waiting";

  const called = t.status === "called";
  const counter = counterWords(t);
  $("called").hidden = !called;
  if (called) {
    $("called").replaceChildren(el("span", { lang: "hi", text: `${counter.hi} पर अभी जाएँ` }),
                                el("span", { lang: "en", text: `Go to ${counter.en} now` }));
  }
  if (travelMinutes() === null && t.leave && t.leave.travel_s !== undefined) {   // the scenario's trip, shown
    const minutesAway = String(Math.round(t.leave.travel_s / 60));
    if (![...$("travel").options].some((o) => o.value === minutesAway)) {
      $("travel").append(el("option", { value: minutesAway, text: `${minutesAway} मिनट · ${minutesAway} min` }));
    }
    $("travel").value = minutesAway;
  }
  const leaveNow = t.status === "waiting" && t.leave && t.leave.leave_now;
  $("leave-now").hidden = !leaveNow;
  const leave = $("t-leave");
  const leaveIn = t.status === "waiting" && t.leave && !t.leave.leave_now && t.leave.leave_in_s !== null;
  leave.hidden = !leaveIn;
  if (leaveIn) {
    const n = Math.max(1, Math.ceil(t.leave.leave_in_s / 60));
    leave.replaceChildren(...bi(`लगभग ${n} मिनट में घर से निकलें`, `Leave in about ${n} min`));
  }

  const booking = $("t-booking");
  booking.hidden = !booked;
  if (booked) {
    const words = dayWords(t.day);
    booking.replaceChildren(
      el("b", { class: "two" }, bi(`${words.hiDay}, ${words.hiDate} · ${hhmm(t.slot_at)} बजे आएँ`,
                                   `Come on ${words.enDay} ${words.enDate} at ${hhmm(t.slot_at)}`)),
      el("p", { class: "two" }, bi("आपका समय शुरू होने पर टोकन नंबर मिलेगा।", "Your token number is given when your slot starts.")));
  }

  const finalBox = $("t-final");
  finalBox.hidden = !final;
  if (final) {
    const words = {
      done: ["आपका काम पूरा हुआ। धन्यवाद!", "You have been served. Thank you!"],
      cancelled: ["यह टोकन रद्द कर दिया गया है।", "This token is cancelled."],
      no_show: ["आपको बुलाया गया पर आप काउंटर पर नहीं थे।", "You were called but were not at the counter."],
      closed_unserved: ["माफ़ कीजिए, आपकी बारी आने से पहले काउंटर बंद हो गए। यह टोकन बंद कर दिया गया है।",
                        "Sorry: the counters closed before your turn came. This token is closed."],
    }[t.status];
    finalBox.replaceChildren(el("p", { class: "two" }, bi(...words)),
      el("a", { class: "primary two", href: `/q/${encodeURIComponent(t.substation.id)}`, id: "new-token" },
         bi("नया टोकन लें", "Take a new token")));
    if (t.status === "closed_unserved") offerFirstSlot(t.substation.id, finalBox);
  }
  $("t-travel").hidden = !(t.status === "waiting" || booked);
  $("cancel").hidden = !(booked || t.status === "waiting" || called);
  renderSms();

  // The moments that matter: say them in the tab's title and buzz the phone once each.
  const moment = called ? `called:${t.counter}` : leaveNow ? "leave" : "";
  document.title = called ? `${counter.hi} जाएँ · Go to ${counter.en} — ${t.number}`
    : leaveNow ? `अभी निकलें · Leave now — ${t.number}`
      : `${t.number || hhmm(t.slot_at)} · टोकन · Token`;
  if (moment && moment !== live.alerted && navigator.vibrate) {
    try { navigator.vibrate(called ? [400, 150, 400, 150, 400] : [300, 120, 300]); } catch (e) { /* not allowed */ }
  }
  live.alerted = moment;
}

// ---- an SMS when the turn is near ---------------------------------------------------------
// Offered only while the utility has a gateway sending them (the server says so), and only
// while the token waits or is booked; the server keeps the number until the token ends.

const sms = { answer: null };
const smsPath = () => `/api/v1/public/tokens/${encodeURIComponent(live.tid)}/sms`;

async function loadSms() {
  try {
    const answer = await call("GET", smsPath());
    if (answer.status === 200) sms.answer = answer.data;
  } catch (e) {
    return;   // no offer shown: nothing is promised
  }
  renderSms();
}

// When the messages go, in the server's own figures (the request's, else the scenario's).
function smsWhen(figures) {
  const n = figures.near_ahead;
  const m = Math.round(figures.near_minutes);
  return bi(`जब आपसे आगे ${n} ${n === 1 ? "व्यक्ति हो" : "लोग हों"} या लगभग ${m} मिनट बचे हों, और जब आपको बुलाया जाए।`,
            `When ${n} ${n === 1 ? "person is" : "people are"} ahead or about ${m} ${m === 1 ? "minute remains" : "minutes remain"}, and when you are called.`);
}

function renderSms() {
  const answer = sms.answer;
  const t = live.token;
  const box = $("t-sms");
  box.hidden = !(answer && answer.offered && t && (t.status === "waiting" || t.status === "booked"));
  const asked = answer && answer.sms;
  document.body.dataset.sms = !answer ? "" : box.hidden ? "none" : asked ? "asked" : "offered";
  if (box.hidden) return;
  $("sms-ask").hidden = Boolean(asked);
  $("sms-on").hidden = !asked;
  if (!asked) {
    $("sms-when").replaceChildren(...smsWhen(answer));
    return;
  }
  $("sms-to").replaceChildren(...bi(`हम ${asked.mobile_hint} पर SMS भेजेंगे`, `We'll text ${asked.mobile_hint}`));
  $("sms-on-when").replaceChildren(...(asked.near_sent
    ? bi("बारी पास होने का SMS भेज दिया गया है; बुलाए जाने पर एक और आएगा।", "The “turn is near” SMS has gone; another comes when you are called.")
    : smsWhen(asked)));
}

// A refusal of the number in words under it (the server's message, Hindi above it); null clears it.
function smsError(answer) {
  const box = $("sms-err");
  const error = (answer && answer.data && answer.data.error) || {};
  const bad = Boolean(answer) && (answer.status === 0 || error.field === "mobile");
  $("sms-mobile").classList.toggle("bad", bad);
  if (bad) $("sms-mobile").setAttribute("aria-invalid", "true");
  else $("sms-mobile").removeAttribute("aria-invalid");
  box.hidden = !answer;
  if (!answer) {
    box.replaceChildren();
    return;
  }
  box.replaceChildren(...(answer.status === 0
    ? bi("नेटवर्क नहीं मिल रहा; फिर से दबाएँ।", "No network; tap again.")
    : bi(FIELD_HINDI[error.field] || HINDI[error.code] || "कुछ गड़बड़ हुई; फिर कोशिश करें।",
         error.message || `Something went wrong (${answer.status}).`)));
}

async function smsCall(method, body, button) {
  smsError(null);
  busy(button, true);
  let answer;
  try {
    answer = await call(method, smsPath(), body);
  } catch (e) {
    answer = { status: 0, data: null };
  }
  busy(button, false);
  if (answer.status === 200 || answer.status === 201) {
    sms.answer = answer.data;
    renderSms();
  } else if (answer.status === 409 || answer.status === 404) {
    showError(answer);   // no gateway now (or no such token): the offer goes, the reason stays on top
    sms.answer = null;
    renderSms();
    loadSms();
  } else if (method === "POST") {
    smsError(answer);
  } else {
    showError(answer);
  }
  return answer;
}

async function askSms(event) {
  event.preventDefault();
  const answer = await smsCall("POST", { mobile: $("sms-mobile").value.trim() }, $("sms-send"));
  if (answer.status === 201) {
    $("sms-mobile").value = "";
    $("sms-stop").focus();
  } else if (!$("sms-err").hidden) {
    $("sms-mobile").focus();
  }
}

async function stopSms() {
  const answer = await smsCall("DELETE", undefined, $("sms-stop"));
  if (answer.status === 200 && !$("sms-ask").hidden) $("sms-mobile").focus();
}

// Closed unserved: offer the first free slot here, so the next visit is not another wait.
async function offerFirstSlot(sid, box) {
  let answer;
  try {
    answer = await call("GET", `/api/v1/public/substations/${encodeURIComponent(sid)}/slots`);
  } catch (e) {
    return;
  }
  const days = (answer.status === 200 && answer.data.days) || [];
  const day = days.find((d) => d.slots.some((slot) => slot.free > 0));
  if (!day || box.querySelector("#first-slot")) return;
  const slot = day.slots.find((s) => s.free > 0);
  const words = dayWords(day.day);
  box.append(el("a", { class: "plain two", href: `/q/${encodeURIComponent(sid)}`, id: "first-slot", "data-at": slot.at },
    bi(`पहला खाली समय: ${words.hiDay}, ${words.hiDate} · ${hhmm(slot.at)} — बुक करें`,
       `First free slot: ${words.enDay} ${words.enDate} at ${hhmm(slot.at)}. Book it`)));
}

async function cancelToken() {
  if (!window.confirm("क्या आप अपना टोकन रद्द करना चाहते हैं?\nCancel your token?")) return;
  clearAlert();
  busy($("cancel"), true);
  const answer = await send(`/api/v1/public/tokens/${encodeURIComponent(live.tid)}/cancel`, undefined);
  busy($("cancel"), false);
  if (answer.status === 200) renderToken(answer.data.token);
  else showError(answer);
}

// ---- which screen ------------------------------------------------------------------------

const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
if (parts[1] === "t" && parts[2]) tokenScreen(parts[2]);
else if (parts[1]) stationScreen(parts[1]);
else listScreen();
