// mqtt-presence dashboard: the table of clients, live from /api/events. Every text from the network is set with
// textContent, never parsed as HTML. The view (filter, states, sort, page, selected client) lives in the URL.
"use strict";

const PAGE = 100;
const $ = (id) => document.getElementById(id);
const view = { q: "", states: [], group: "", sort: "client", page: 0, client: "", topic: "", window: "24h" };
let rows = [];            // the page's rows, as /api/clients gives them
let extra = [];           // their 24-hour figures
let scanner = null;       // the service's own connection
let refreshTimer = null;
let silences = [];        // running silences (/api/silences)

// --- the view in the URL -----------------------------------------------------------------------------------------
function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  view.q = p.get("q") || "";
  view.states = (p.get("state") || "").split(",").filter(Boolean);
  view.group = p.get("group") || "";
  view.sort = p.get("sort") || "client";
  view.page = Math.max(0, parseInt(p.get("page") || "0", 10) || 0);
  view.client = p.get("client") || "";
  view.topic = p.get("topic") || "";
  view.window = ["1h", "24h", "7d", "30d"].includes(p.get("window")) ? p.get("window") : "24h";
}
function writeHash() {
  const p = new URLSearchParams();
  if (view.q) p.set("q", view.q);
  if (view.states.length) p.set("state", view.states.join(","));
  if (view.group) p.set("group", view.group);
  if (view.sort !== "client") p.set("sort", view.sort);
  if (view.page) p.set("page", String(view.page));
  if (view.client) { p.set("client", view.client); p.set("topic", view.topic); }
  if (view.client && view.window !== "24h") p.set("window", view.window);
  const text = p.toString();
  history.replaceState(null, "", text ? "#" + text : location.pathname);
}

// --- formatting ----------------------------------------------------------------------------------------------------
function ago(iso) {
  if (!iso) return "?";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return Math.floor(s) + "s ago";
  if (s < 3600) return Math.floor(s / 60) + "m " + Math.floor(s % 60) + "s ago";
  if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m ago";
  return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h ago";
}
function local(iso) { return iso ? new Date(iso).toLocaleString() : "?"; }
function stateOf(c) { return c.overdue ? "overdue" : c.stale ? "stale" : c.state; }
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

// --- the table -----------------------------------------------------------------------------------------------------
function stateCell(c) {
  const s = stateOf(c);
  const badge = el("span", "state s-" + s, s);
  if (c.liveness === "will-only" && s === "connected") badge.title = "connected on the client's word: no heartbeat";
  if (s === "overdue") badge.title = "connected, but not heard from for longer than expected" +
    (c.expect_s ? " (" + hours(c.expect_s * 1000) + ")" : "") + "; last heard " + ago(c.last_seen);
  return badge;
}
const DAY_MS = 86400000;
function hours(ms) { return ms >= 3600000 ? Math.round(ms / 3600000) + " h" : Math.max(1, Math.round(ms / 60000)) + " min"; }
// The last 24 h as the history saw them: the strip spans the time the service watched (not a day of grey before
// it started), every segment at least a sliver wide, unknown hatched (never the background), and says how much of
// the day it covers.
function strip(segments) {
  const wrap = el("div", "stripwrap");
  const box = el("div", "strip");
  wrap.appendChild(box);
  if (!segments || !segments.length) { box.classList.add("empty"); box.title = "no history yet"; return wrap; }
  let first = segments.findIndex((s) => s[2] !== "unknown");
  if (first < 0) first = 0;
  const shown = segments.slice(first);
  const from = shown[0][0], to = shown[shown.length - 1][1], span = Math.max(1, to - from);
  const watched = shown.reduce((n, [a, b, h]) => n + (h === "unknown" ? 0 : b - a), 0);
  const lines = ["from " + new Date(from).toLocaleString() + " to " + new Date(to).toLocaleString()];
  for (const [a, b, h] of shown) {
    const part = el("span", h);
    part.style.flexGrow = String((b - a) / span);
    part.title = h + ": " + new Date(a).toLocaleTimeString() + "–" + new Date(b).toLocaleTimeString() +
      " (" + hours(b - a) + ")";
    box.appendChild(part);
  }
  box.title = lines.concat(["green up, red down, hatched unknown (nobody watched)"]).join("\n");
  if (to - from < DAY_MS - 60000) wrap.appendChild(el("span", "watched muted", hours(watched) + " of 24 h"));
  return wrap;
}
// The time of a death in the row itself: "lost 14:02, 3m ago".
function sinceText(c) {
  const s = stateOf(c);
  if (s !== "disconnected" || !c.since) return ago(c.since);
  const t = new Date(c.since);
  const clock = t.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return (c.detail || "down") + " " + clock + ", " + ago(c.since);
}
// A simple glob (* and ?) as silences and groups write them.
function globMatch(glob, text) {
  const re = "^" + glob.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$";
  return new RegExp(re).test(text);
}
function covers(s, c) {
  return s.target.startsWith("group:") ? (c.groups || []).includes(s.target.slice(6)) : globMatch(s.target, c.client);
}
function silenceOf(c) { return silences.find((s) => covers(s, c)); }
async function loadSilences() {
  const res = await fetch("api/silences");
  if (res.ok) silences = (await res.json()).silences;
}
function renderRow(c, x) {
  const tr = el("tr");
  tr.dataset.key = c.client + "\u0000" + c.topic;
  if (c.client === view.client && c.topic === view.topic) tr.classList.add("selected");
  const name = el("td", "name", c.client);
  if (c.groups && c.groups.length) name.appendChild(el("span", "groups muted", c.groups.join(", ")));
  const quiet = silenceOf(c);
  if (quiet) {
    const badge = el("span", "silenced", "silenced until " + new Date(quiet.until).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    badge.title = quiet.reason + " (by " + quiet.by + ")";
    name.appendChild(badge);
  }
  tr.appendChild(name);
  const st = el("td"); st.appendChild(stateCell(c)); tr.appendChild(st);
  const since = el("td", "since", sinceText(c)); since.dataset.iso = c.since || ""; since.title = local(c.since);
  since.dataset.down = stateOf(c) === "disconnected" ? (c.detail || "down") : ""; tr.appendChild(since);
  const seen = el("td", "seen wide", ago(c.last_seen)); seen.dataset.iso = c.last_seen || ""; seen.title = local(c.last_seen); tr.appendChild(seen);
  tr.appendChild(el("td", "", x && x.uptime_percent !== null && x.uptime_percent !== undefined ? x.uptime_percent + " %" : "?"));
  tr.appendChild(el("td", "wide", x && x.flaps !== null && x.flaps !== undefined ? x.flaps : "?"));
  const t = el("td", "wide"); t.appendChild(strip(x && x.timeline)); tr.appendChild(t);
  tr.appendChild(el("td", "wide", c.ip || ""));
  tr.appendChild(el("td", "wide", c.detail || ""));
  tr.appendChild(el("td", "wide", c.topic));
  const meta = c.meta ? JSON.stringify(c.meta) : "";
  const m = el("td", "wide", meta); m.title = meta; tr.appendChild(m);
  tr.addEventListener("click", () => select(c.client, c.topic));
  return tr;
}
function render(data) {
  rows = data.clients; extra = data.history || [];
  const body = document.querySelector("#clients tbody");
  const fresh = document.createDocumentFragment();
  rows.forEach((c, i) => fresh.appendChild(renderRow(c, extra[i])));
  body.replaceChildren(fresh);
  const n = data.counts;
  // The "connected" chip filters the healthy ones: it counts them (up), not the stale and overdue among the connected.
  for (const s of ["disconnected", "unknown", "stale", "overdue"]) $("n-" + s).textContent = n[s] || 0;
  $("n-connected").textContent = n.up;
  showDown(n.disconnected + (n.connected - n.up));  // a client both stale and overdue is down once
  const first = data.total ? data.offset + 1 : 0, last = data.offset + rows.length;
  $("range").textContent = first + "–" + last + " of " + data.total;
  $("prev").disabled = view.page === 0;
  $("next").disabled = last >= data.total;
  showScanner(data.scanner);
  for (const th of document.querySelectorAll("th[data-sort]")) {
    const key = th.dataset.sort, on = view.sort === key || view.sort === "-" + key;
    th.classList.toggle("sorted", on);
    th.classList.toggle("desc", on && view.sort.startsWith("-"));
  }
}
// The tab says what is down, so a background tab still tells: "(2 down) mqtt-presence · broker", and a red icon.
let titleBase = "mqtt-presence";
function showDown(down) {
  document.title = (down > 0 ? "(" + down + " down) " : "") + titleBase;
  const colour = down > 0 ? "%23c62828" : "%231a7f37";
  const icon = "data:image/svg+xml," + "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'>" +
    "<circle cx='8' cy='8' r='7' fill='" + colour + "'/></svg>";
  const link = document.querySelector("link[rel=icon]");
  if (link.getAttribute("href") !== icon) link.setAttribute("href", icon);
}
function showScanner(st) {
  if (!st) return;
  scanner = st;
  const banner = $("banner");
  if (!st.connected) {
    banner.textContent = "The service is disconnected from the broker" + (st.since ? " since " + local(st.since) : "") +
      ": every state below is as last known, and may be out of date.";
    banner.hidden = false;
  } else if (st.sync !== "complete") {
    banner.textContent = st.sync === "syncing" ? "Syncing with the broker: the table may be incomplete."
      : st.sync === "partial"
        ? "Partial: this broker sends no retained status to a wildcard subscription (RabbitMQ is one). The table " +
          "holds the clients this service's history knows (asked for by their topics) and those heard live; a " +
          "client it never heard of appears when it next speaks."
        : "The sync is not verified: " + (st.broker_dropped > 0 ? "the broker reports " + st.broker_dropped +
          " dropped messages" : "the sync marker did not come back") + ", so a status may be missing or out of " +
          "date until the next re-sync (mosquitto: raise max_queued_messages above the fleet size).";
    banner.hidden = false;
  } else {
    banner.hidden = true;
  }
  document.body.classList.toggle("offline", !st.connected);
}
async function loadAlerts() {
  const res = await fetch("api/alerts?limit=8");
  if (!res.ok) return;
  const data = await res.json();
  const list = document.querySelector("#alerts ul");
  list.replaceChildren();
  for (const a of data.alerts) {
    const li = el("li");
    li.appendChild(el("span", "muted", local(a.time)));
    li.appendChild(el("span", "kind k-" + a.alert, a.alert));
    const who = el("span", "who", a.client !== null ? a.client
      : (a.group ? a.title : a.count + " clients") + " (" + (a.sample || []).join(", ") +
        (a.count > (a.sample || []).length ? ", …" : "") + ")");
    who.title = who.textContent.slice(0, 300);
    li.appendChild(who);
    if (a.silenced) li.appendChild(el("span", "muted", " held by a silence"));
    list.appendChild(li);
  }
  $("alerts").hidden = data.alerts.length === 0;
}
async function fetchPage() {
  loadAlerts().catch(() => {});
  const silenced = loadSilences().catch(() => {});  // beside the page's fetch, not before it
  const p = new URLSearchParams({ limit: String(PAGE), offset: String(view.page * PAGE), sort: view.sort, history: "1" });
  if (view.q) p.set("q", view.q);
  if (view.states.length) p.set("state", view.states.join(","));
  if (view.group) p.set("group", view.group);
  const res = await fetch("api/clients?" + p.toString());
  await silenced;
  if (!res.ok) return;
  render(await res.json());
}
// One load at a time: a load asked for while one is in flight runs once, after it (so the page ends up current):
// at once when the person asked for it (`now`), else as a refresh of the live feed.
let loading = null, loadAgain = "", lastLoad = 0;
function load(now = true) {
  if (loading) { if (loadAgain !== "now") loadAgain = now ? "now" : "feed"; return loading; }
  lastLoad = Date.now();
  loading = fetchPage().catch(() => {}).finally(() => {
    loading = null;
    const again = loadAgain;
    loadAgain = "";
    if (again === "now") load(); else if (again) refreshSoon(0);
  });
  return loading;
}
// A refresh the live feed asks for: after `ms`, and at most one a second while changes keep coming (a storm's
// resets and batches must not turn every viewer into a load on the service exactly when it is busiest).
const MIN_GAP = 1000;
function refreshSoon(ms) {
  if (refreshTimer) return;
  const wait = Math.max(ms, lastLoad + MIN_GAP - Date.now());
  refreshTimer = setTimeout(() => { refreshTimer = null; load(false); }, wait);
}

// --- a client's history ----------------------------------------------------------------------------------------------
async function select(client, topic) {
  view.client = client; view.topic = topic; writeHash();
  for (const tr of document.querySelectorAll("#clients tbody tr"))
    tr.classList.toggle("selected", tr.dataset.key === client + "\u0000" + topic);
  $("detail-name").textContent = client;
  $("detail-topic").textContent = topic;
  $("detail").hidden = false;
  showSilences();
  for (const b of document.querySelectorAll("#detail-windows .chip"))
    b.setAttribute("aria-pressed", String(b.dataset.window === view.window));
  await Promise.all([showTimeline(), showEvents()]);
}
// How long: "42 s", "5 min", "3 h 04 min", "2 d 5 h".
function span(ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  if (s < 86400) return Math.floor(s / 3600) + " h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + " min";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
}
// The window as coloured segments, every one at least a sliver wide, unknown hatched; the figures beside it.
async function showTimeline() {
  const p = new URLSearchParams({ window: view.window });
  if (view.topic) p.set("topic", view.topic);
  const res = await fetch("api/clients/" + encodeURIComponent(view.client) + "/timeline?" + p.toString());
  const box = $("detail-timeline"), facts = $("detail-facts");
  box.replaceChildren(); facts.replaceChildren();
  if (!res.ok) return;
  const t = await res.json();
  const bar = el("div", "timeline");
  const whole = Math.max(1, t.to - t.from);
  for (const [a, b, s] of t.segments) {
    const part = el("span", "seg " + s);
    part.style.flexGrow = String((b - a) / whole);
    part.title = s + ": " + new Date(a).toLocaleString() + " – " + new Date(b).toLocaleString() + " (" + span(b - a) + ")";
    bar.appendChild(part);
  }
  box.appendChild(bar);
  const legend = el("div", "muted legend", new Date(t.from).toLocaleString() + " – now");
  box.appendChild(legend);
  const row = rows.find((r) => r.client === view.client && (!view.topic || r.topic === view.topic)) || {};
  const fact = (name, value) => { facts.appendChild(el("dt", "", name)); facts.appendChild(el("dd", "", value)); };
  fact("Uptime " + t.window, t.uptime_percent === null ? "? (nobody watched)" : t.uptime_percent.toFixed(2) + " %");
  fact("Disconnects", t.disconnects + (t.flaps ? " (" + t.flaps + " flaps)" : ""));
  fact("Longest outage", t.longest_outage_s ? span(t.longest_outage_s * 1000) : "none");
  if (t.unknown_s > 0) fact("Not watched", span(t.unknown_s * 1000));
  if (row.expect) fact("Expected", row.expect === "auto"
    ? (row.cadence_s ? "learned: every " + span(row.cadence_s * 1000) + ", overdue after " + span(row.expect_s * 1000)
                     : "learned (not enough messages yet)")
    : "within " + span(row.expect_s * 1000));
  if (row.last_seen) fact("Last seen", local(row.last_seen));
  if (row.meta) for (const [k, v] of Object.entries(row.meta)) fact(k, typeof v === "string" ? v : JSON.stringify(v));
}
// The window's events, newest first, each with how long its state lasted.
async function showEvents() {
  const since = view.window;
  const q = "api/clients/" + encodeURIComponent(view.client) + "/history?since=" + since + "&topic=" + encodeURIComponent(view.topic);
  const res = await fetch(q);
  const body = document.querySelector("#detail tbody");
  body.replaceChildren();
  if (!res.ok) return;
  const data = await res.json();
  let later = Date.now();  // the next event's time (the newest lasts until now)
  for (const e of data.events) {
    const tr = el("tr");
    tr.appendChild(el("td", "", e.time ? local(e.time) : "unknown (seen " + local(e.observed) + ")"));
    const shown = e.overdue ? "overdue" : e.stale ? "stale" : e.state;
    const st = el("td"); st.appendChild(el("span", "state s-" + shown, shown)); tr.appendChild(st);
    const at = e.time ? Date.parse(e.time) : null;
    tr.appendChild(el("td", "", at !== null && later !== null ? span(later - at) : "?"));
    later = at;
    tr.appendChild(el("td", "", e.cause));
    tr.appendChild(el("td", "", e.previous || "–"));
    tr.appendChild(el("td", "", e.ip || ""));
    body.appendChild(tr);
  }
  if (!data.events.length) body.appendChild(el("tr")).appendChild(el("td", "muted", "no events in the last " + since));
}
// The selected client's silences, each with an End button, and the form that sets one.
function showSilences() {
  const list = $("detail-silences");
  list.replaceChildren();
  const row = rows.find((r) => r.client === view.client && r.topic === view.topic) || { client: view.client, groups: [] };
  for (const s of silences.filter((x) => covers(x, row))) {
    const li = el("li", "", "Silenced until " + local(s.until) + " by " + s.by + ": " + s.reason + " ");
    const end = el("button", "end", "End");
    end.type = "button";
    end.addEventListener("click", async () => {
      await fetch("api/silences/" + encodeURIComponent(s.id), { method: "DELETE" });
      await loadSilences(); showSilences(); load();
    });
    li.appendChild(end);
    list.appendChild(li);
  }
}
async function silenceSelected(ev) {
  ev.preventDefault();
  const error = $("silence-error");
  const res = await fetch("api/silences", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ target: view.client, for: $("silence-for").value, reason: $("silence-reason").value }),
  });
  const body = await res.json().catch(() => ({}));
  error.hidden = res.ok;
  error.textContent = res.ok ? "" : (body.error || "the service refused (" + res.status + ")");
  if (res.ok) { $("silence-reason").value = ""; await loadSilences(); showSilences(); load(); }
}
function closeDetail() { view.client = ""; view.topic = ""; writeHash(); $("detail").hidden = true; }

// --- live ------------------------------------------------------------------------------------------------------------
function applyChange(ch) {
  const c = ch.client;
  const key = c.client + "\u0000" + c.topic;
  const tr = [...document.querySelectorAll("#clients tbody tr")].find((r) => r.dataset.key === key);
  if (tr && ch.event !== "removed") {
    const i = rows.findIndex((r) => r.client === c.client && r.topic === c.topic);
    const merged = Object.assign({}, i >= 0 ? rows[i] : {}, c);
    if (i >= 0) rows[i] = merged;
    const fresh = renderRow(merged, i >= 0 ? extra[i] : null);
    fresh.classList.add("flash");
    tr.replaceWith(fresh);
  }
  if (view.client === c.client && view.topic === c.topic) detailSoon();
}
// The selected client's history after a change of it: at most one fetch a second, none overlapping.
let detailTimer = null;
function detailSoon() {
  if (detailTimer) return;
  detailTimer = setTimeout(async () => {
    try { if (view.client) await select(view.client, view.topic); } catch (e) { /* the next change retries */ }
    detailTimer = null;
  }, MIN_GAP);
}
// Opt-in browser notifications: asked for with a click, remembered in this browser, one per client going down (a
// live change, never a replay), tagged by client so that a flapping one replaces its own. A storm never becomes a
// storm of notifications: a client at most once a minute, and at most three in ten seconds (the rest are counted
// into the next one).
let notifying = false, notified = 0, held = 0;
const lastNotified = new Map();
let recent = [];
function showNotifyButton() {
  const b = $("notify");
  if (!("Notification" in window)) { b.hidden = true; return; }
  notifying = localStorage.getItem("notify") === "1" && Notification.permission === "granted";
  b.textContent = notifying ? "Notifying" : "Notify me";
  b.setAttribute("aria-pressed", String(notifying));
}
async function toggleNotify() {
  if (notifying) { localStorage.removeItem("notify"); showNotifyButton(); return; }
  const answer = await Notification.requestPermission();
  if (answer === "granted") localStorage.setItem("notify", "1");
  showNotifyButton();
}
function notifyOf(ch) {
  const c = ch.client;
  const down = c.state === "disconnected" || c.stale || c.overdue;
  if (!notifying || !down || ch.previous === null || ch.event === "removed" || ch.event === "added") return;
  const what = c.overdue ? "is overdue" : c.stale ? "is stale" : "went down";
  const key = c.client + "\u0000" + c.topic, now = Date.now();
  recent = recent.filter((t) => now - t < 10000);
  if (now - (lastNotified.get(key) || 0) < 60000 || recent.length >= 3) { held++; return; }
  lastNotified.set(key, now);
  recent.push(now);
  const more = held ? " (and " + held + " more changes)" : "";
  held = 0;
  try {
    new Notification(c.client + " " + what, { body: c.topic + (ch.cause ? " (" + ch.cause + ")" : "") + more, tag: key });
    document.body.dataset.notified = String(++notified);
  } catch (e) { /* a browser that refuses one: the page still shows it */ }
}
function listen() {
  const source = new EventSource("api/events");
  source.addEventListener("open", () => $("live").classList.add("on"));
  source.addEventListener("error", () => $("live").classList.remove("on"));
  source.addEventListener("changes", (ev) => {
    const data = JSON.parse(ev.data);
    for (const ch of data.changes) { applyChange(ch); notifyOf(ch); }
    refreshSoon(400);  // counts, order, new and removed clients
  });
  source.addEventListener("reset", () => refreshSoon(50));
  source.addEventListener("scanner", (ev) => { showScanner(JSON.parse(ev.data)); showInfo(); refreshSoon(200); });
}

// --- controls --------------------------------------------------------------------------------------------------------
function bind() {
  const q = $("q");
  q.value = view.q;
  let typing = null;
  q.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { view.q = q.value; view.page = 0; writeHash(); load(); }, 150);
  });
  for (const chip of document.querySelectorAll(".chip[data-state]")) {
    chip.setAttribute("aria-pressed", String(view.states.includes(chip.dataset.state)));
    chip.addEventListener("click", () => {
      const s = chip.dataset.state;
      view.states = view.states.includes(s) ? view.states.filter((x) => x !== s) : view.states.concat([s]);
      chip.setAttribute("aria-pressed", String(view.states.includes(s)));
      view.page = 0; writeHash(); load();
    });
  }
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      view.sort = view.sort === key ? "-" + key : key;
      view.page = 0; writeHash(); load();
    });
  }
  $("prev").addEventListener("click", () => { view.page = Math.max(0, view.page - 1); writeHash(); load(); });
  $("next").addEventListener("click", () => { view.page += 1; writeHash(); load(); });
  $("detail-close").addEventListener("click", closeDetail);
  $("silence-form").addEventListener("submit", silenceSelected);
  $("notify").addEventListener("click", toggleNotify);
  showNotifyButton();
  for (const b of document.querySelectorAll("#detail-windows .chip"))
    b.addEventListener("click", () => { view.window = b.dataset.window; writeHash(); select(view.client, view.topic); });
  // Ages move on without a reload.
  setInterval(() => {
    for (const td of document.querySelectorAll("td.since, td.seen")) {
      td.textContent = td.dataset.down && td.dataset.iso
        ? td.dataset.down + " " + new Date(td.dataset.iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) +
          ", " + ago(td.dataset.iso)
        : ago(td.dataset.iso);
    }
  }, 1000);
}

// One chip per group (--group): a filter, one group at a time.
function showGroups(names) {
  const box = $("groups");
  box.replaceChildren();
  for (const g of names) {
    const chip = el("button", "chip group", g);
    chip.type = "button";
    chip.dataset.group = g;
    chip.setAttribute("aria-pressed", String(view.group === g));
    chip.addEventListener("click", () => {
      view.group = view.group === g ? "" : g;
      for (const other of box.querySelectorAll(".chip")) other.setAttribute("aria-pressed", String(other.dataset.group === view.group));
      view.page = 0; writeHash(); load();
    });
    box.appendChild(chip);
  }
  box.hidden = names.length === 0;
}

// The broker, the filters and, beside a leader, this service's role: a follower keeps its own table and says whom
// it follows (read again whenever the service's own state changes: a follower may have taken over).
async function showInfo() {
  try {
    const info = await (await fetch("api/info")).json();
    const role = info.role === "follower" ? "  · follower of " + (info.leader || "another serve") : "";
    $("broker").textContent = info.broker + "  " + info.topics.join(" ") + role;
    const was = titleBase;
    titleBase = "mqtt-presence · " + info.broker;
    document.title = document.title.replace(was, titleBase);
    showGroups(info.groups || []);
  } catch (e) { /* the table still works */ }
}

async function start() {
  readHash();
  bind();
  await showInfo();
  await load();
  if (view.client) select(view.client, view.topic);
  listen();
}
start();
