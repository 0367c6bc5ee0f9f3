// The demo page: a roster grouped by user (createPresence), typing indicators
// that expire, live cursors (throttled by the client: at most one publish per
// 50 ms and one in flight), a room switcher and a connection-status badge.
import { createPresence, ThrottledPresenceClient } from "/client.js";

const ROOMS = ["lobby", "design", "random"];
const NAMES = [
  "Ada",
  "Grace",
  "Linus",
  "Barbara",
  "Alan",
  "Margaret",
  "Dennis",
  "Frances",
  "Ken",
  "Radia",
  "Edsger",
  "Hedy",
  "Donald",
  "Katherine",
  "Niklaus",
  "Shafi",
  "Tim",
  "Anita",
  "John",
  "Sophie",
  "Guido",
  "Joan",
  "Leslie",
  "Mary",
];
const $ = (id) => document.getElementById(id);
const q = new URLSearchParams(location.search);
const saved = (key, fallback) => {
  try {
    const v = q.get(key) ?? localStorage.getItem(`presently-demo:${key}`) ?? fallback;
    localStorage.setItem(`presently-demo:${key}`, v);
    return v;
  } catch {
    return q.get(key) ?? fallback;
  }
};
const name = saved("name", NAMES[Math.floor(Math.random() * NAMES.length)]);
const user = saved("user", crypto.randomUUID().slice(0, 8));
let room = ROOMS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "lobby";

const hue = (s) => [...s].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 7);
const color = (s) => `hsl(${hue(s)} 80% 65%)`;
const initials = (n) => n.split(/\s+/).map((w) => w[0] ?? "").join("").slice(0, 2).toUpperCase();
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const proto = location.protocol === "https:" ? "wss" : "ws";
const client = new ThrottledPresenceClient(`${proto}://${location.host}/ws`, {
  params: { name, user },
});
// A log for tests and the curious: membership events and roster renders.
const log = { events: [], rosters: [] };
globalThis.presently = {
  client,
  log,
  get presence() {
    return presence;
  },
};
$("me").textContent = `you are ${name}`;

client.onStatus((status) => {
  const el = $("status");
  el.dataset.status = status;
  el.textContent = status === "open" ? (client.resumed ? "resumed" : "online") : status;
});

let presence = null;
let cursorRoom = null;
const cursors = new Map(); // connectionId -> element
const names = new Map(); // connectionId -> metadata

function renderRoster(users) {
  log.rosters.push(users.map((u) => `${u.id}:${u.tabCount}`));
  $("count").textContent = String(users.length);
  const me = client.connectionId;
  $("roster").innerHTML = users.map((u) => {
    const n = u.meta?.name ?? u.id;
    const tabs = u.tabCount > 1 ? `${u.tabCount} tabs` : "1 tab";
    const typing = u.state?.typing === true;
    return `<li data-user="${esc(u.id)}" data-tabs="${u.tabCount}" data-typing="${typing}"
      class="${u.connections.includes(me) ? "self" : ""}">
      <div class="avatar" style="background:${color(u.id)}">${esc(initials(n))}</div>
      <div class="who"><b>${esc(n)}${u.connections.includes(me) ? " (you)" : ""}</b>
      <small>${tabs} <span class="typing">· typing<span class="dots"></span></span></small></div></li>`;
  }).join("");
  const typers = users.filter((u) => u.state?.typing && !u.connections.includes(me))
    .map((u) => u.meta?.name ?? u.id);
  $("typing-line").textContent = typers.length
    ? `${typers.join(", ")} ${typers.length > 1 ? "are" : "is"} typing…`
    : "";
}

function drawCursor(cid, state) {
  if (cid === client.connectionId) return;
  let el = cursors.get(cid);
  if (state === null || state === undefined || typeof state.x !== "number") {
    el?.remove();
    cursors.delete(cid);
    return;
  }
  const meta = names.get(cid) ?? {};
  if (!el) {
    el = document.createElement("div");
    el.className = "cursor";
    el.dataset.cursor = cid;
    const c = color(meta.userId ?? cid);
    el.innerHTML =
      `<svg width="18" height="18" viewBox="0 0 18 18"><path d="M1 1l6 16 2-7 7-2z" fill="${c}"/></svg>
      <span style="background:${c}">${esc(meta.name ?? "someone")}</span>`;
    $("stage").append(el);
    cursors.set(cid, el);
  }
  const { width, height } = $("stage").getBoundingClientRect();
  el.style.transform = `translate(${state.x * width}px, ${state.y * height}px)`;
}

function onCursor(u) {
  if (u.type !== "state" || u.state === null) {
    log.events.push({
      type: u.type,
      cid: u.connectionId,
      cleared: u.type === "state",
      at: Date.now(),
    });
  }
  if (u.type === "join") names.set(u.connectionId, u.meta);
  else if (u.type === "leave") {
    drawCursor(u.connectionId, null);
    names.delete(u.connectionId);
  } else if (u.type === "state") drawCursor(u.connectionId, u.state);
}

async function enter(next) {
  if (presence) await presence.destroy();
  if (cursorRoom) await client.leaveRoom(cursorRoom);
  for (const el of cursors.values()) el.remove();
  cursors.clear();
  names.clear();
  room = next;
  history.replaceState(null, "", `${location.search}#${room}`);
  for (const b of $("rooms").children) {
    b.setAttribute("aria-current", String(b.dataset.room === room));
  }
  presence = createPresence({
    client,
    room: `demo:${room}`,
    metadataIdentifier: (m) => m.userId,
    onUpdate: renderRoster,
  });
  await presence.ready;
  renderRoster(presence.users);
  cursorRoom = `demo:${room}/cursors`;
  await client.joinRoom(cursorRoom);
  const snap = await client.subscribePresence(cursorRoom, onCursor);
  for (const m of snap.members) names.set(m.id, m.meta);
  for (const [cid, s] of snap.states) drawCursor(cid, s);
}

// Cursors: every move is handed to the client, which throttles per room (one
// request per 50 ms, one in flight, the newest position wins).
$("stage").addEventListener("pointermove", (e) => {
  if (!cursorRoom) return;
  const r = $("stage").getBoundingClientRect();
  const state = { x: (e.clientX - r.left) / r.width, y: (e.clientY - r.top) / r.height };
  client.publishPresenceState(cursorRoom, { state, expireAfter: 30_000, throttleMs: 50 });
});
$("stage").addEventListener("pointerleave", () => {
  if (cursorRoom) client.clearPresenceState(cursorRoom); // drops a queued move
});

// Typing: a state that expires on its own 3 s after the last keystroke.
let lastTyping = 0;
$("message").addEventListener("input", () => {
  if (Date.now() - lastTyping < 1000) return;
  lastTyping = Date.now();
  client.publishPresenceState(`demo:${room}`, { state: { typing: true }, expireAfter: 3000 });
});
$("composer").addEventListener("submit", () => {
  $("message").value = "";
  lastTyping = 0;
  client.clearPresenceState(`demo:${room}`);
});

$("rooms").innerHTML = ROOMS.map((r) => `<button data-room="${r}">#${r}</button>`).join("");
$("rooms").addEventListener("click", (e) => {
  const r = e.target.closest("button")?.dataset.room;
  if (r && r !== room) enter(r);
});

await client.connect();
await enter(room);
document.body.dataset.ready = "true";
