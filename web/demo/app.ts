// The demo: a shared notes board on the `cstore` package. Every note lives in the browser
// replica (IndexedDB), so the board works offline; writes sync to the server and from there to
// every other window. The status panel and the chart show what the replica is doing.
//
// Tests drive the page through its controls and read `window.cstoreDemo` (the open database).

import { CstoreError, openReplica, type Db, type Document, type Status } from "cstore";

import { ReplicationChart } from "./chart.js";

/** A note on the board. */
interface Note extends Document {
  text: string;
  done: boolean;
  createdAt: number;
  updatedAt: number;
  author: string;
}

type FilterName = "all" | "open" | "done";

const $ = <E extends HTMLElement>(id: string) => document.getElementById(id) as E;
const TAB_NAME = `window ${Math.random().toString(16).slice(2, 6)}`;
const SAMPLE_MS = 1000;

const chart = new ReplicationChart($<HTMLCanvasElement>("chart"), 60);
let filter: FilterName = "all";
let notes: Note[] = [];
/**
 * Ids written here while writes were pending: shown as "pending" until the replica has no
 * pending write left. Kept in localStorage so the marks survive an offline reload, as the
 * writes themselves do (in IndexedDB).
 */
const UNCONFIRMED_KEY = "cstore-demo:unconfirmed";
const unconfirmed = new Set<string>(JSON.parse(localStorage.getItem(UNCONFIRMED_KEY) ?? "[]") as string[]);
function saveUnconfirmed(): void {
  if (unconfirmed.size === 0) localStorage.removeItem(UNCONFIRMED_KEY);
  else localStorage.setItem(UNCONFIRMED_KEY, JSON.stringify([...unconfirmed].slice(-1000)));
}

function showBanner(text: string, kind: "error" | "offline" = "error"): void {
  const banner = $("banner");
  banner.hidden = text === "";
  banner.textContent = text;
  banner.className = `banner ${kind === "offline" ? "offline" : ""}`;
}

function describe(error: unknown): string {
  const e = CstoreError.from(error);
  return `${e.message} (${e.code})`;
}

// The service worker keeps the page itself available offline (the data is in IndexedDB).
navigator.serviceWorker?.register("sw.js").catch((e) => console.warn("no service worker:", e));

let db: Db;
try {
  db = await openReplica(location.origin, { name: "cstore-demo" });
} catch (error) {
  showBanner(`Could not open the replica: ${describe(error)}`);
  $("pill-conn").textContent = "Not started";
  $("pill-conn").className = "pill pill-bad";
  throw error;
}
const board = db.collection<Note>("notes");
(window as unknown as { cstoreDemo: unknown }).cstoreDemo = { db, notes: board };

// --- the board --------------------------------------------------------------------------------

function render(): void {
  const counts = { all: notes.length, open: notes.filter((n) => !n.done).length, done: 0 };
  counts.done = counts.all - counts.open;
  for (const [name, count] of Object.entries(counts)) {
    const el = document.querySelector(`[data-count="${name}"]`);
    if (el) el.textContent = String(count);
  }
  const shown = notes.filter((n) => filter === "all" || (filter === "done") === n.done);
  const list = $("notes");
  const editing = list.querySelector<HTMLInputElement>("input.edit");
  if (editing) return; // Re-render after the edit ends, not under the user's cursor.
  list.replaceChildren(...shown.map(noteItem));
  $("empty").hidden = notes.length !== 0;
}

function noteItem(note: Note): HTMLLIElement {
  const item = document.createElement("li");
  item.className = `note${note.done ? " done" : ""}`;
  item.dataset.id = note._id;
  item.dataset.testid = "note";

  const box = document.createElement("input");
  box.type = "checkbox";
  box.checked = note.done;
  box.title = note.done ? "Mark as open" : "Mark as done";
  box.addEventListener("change", () => write(note._id, board.update(note._id, { done: box.checked, updatedAt: Date.now() })));

  const body = document.createElement("div");
  const text = document.createElement("div");
  text.className = "text";
  text.textContent = note.text;
  text.title = "Click to edit";
  text.addEventListener("click", () => edit(note, body, text));
  const meta = document.createElement("div");
  meta.className = "meta";
  const when = document.createElement("span");
  when.textContent = `${note.author} · ${ago(note.updatedAt)}`;
  meta.append(when);
  if (unconfirmed.has(note._id) && db.status.pendingWrites > 0) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "pending";
    badge.dataset.testid = "pending-badge";
    meta.append(badge);
  }
  body.append(text, meta);

  const remove = document.createElement("button");
  remove.className = "delete";
  remove.type = "button";
  remove.title = "Delete";
  remove.setAttribute("aria-label", "Delete note");
  remove.textContent = "×";
  remove.addEventListener("click", () => write(note._id, board.remove(note._id)));

  item.append(box, body, remove);
  return item;
}

function edit(note: Note, body: HTMLElement, text: HTMLElement): void {
  const input = document.createElement("input");
  input.className = "edit";
  input.value = note.text;
  input.maxLength = 500;
  let done = false;
  const finish = (save: boolean) => {
    if (done) return;
    done = true;
    const value = input.value.trim();
    input.replaceWith(text);
    if (save && value !== "" && value !== note.text) {
      write(note._id, board.update(note._id, { text: value, updatedAt: Date.now() }));
    }
    render();
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") finish(true);
    if (e.key === "Escape") finish(false);
  });
  input.addEventListener("blur", () => finish(true));
  text.replaceWith(input);
  input.focus();
  input.select();
}

/** Tracks a write for the "pending" badge and reports a local failure. */
function write(id: string, pending: Promise<unknown>): void {
  unconfirmed.add(id);
  saveUnconfirmed();
  pending.then(render, (error) => {
    unconfirmed.delete(id);
    saveUnconfirmed();
    showBanner(`Write failed: ${describe(error)}`);
  });
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return new Date(ms).toLocaleString();
}

$<HTMLFormElement>("add").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $<HTMLInputElement>("add-text");
  const text = input.value.trim();
  if (text === "") return;
  input.value = "";
  const now = Date.now();
  const written = board.insert({ text, done: false, createdAt: now, updatedAt: now, author: TAB_NAME });
  written.then(({ id }) => write(id, Promise.resolve()), (error) => showBanner(`Write failed: ${describe(error)}`));
});

for (const button of document.querySelectorAll<HTMLButtonElement>(".filter")) {
  button.addEventListener("click", () => {
    filter = button.dataset.filter as FilterName;
    for (const b of document.querySelectorAll(".filter")) b.classList.toggle("active", b === button);
    render();
  });
}

board.watch({ sort: [["createdAt", -1]] }, (docs) => {
  notes = docs;
  render();
});

db.on("rejected", (rejected) => {
  showBanner(`The server refused a write (${rejected.code}): ${rejected.message}. It was rolled back here.`);
});

// --- status panel and chart -------------------------------------------------------------------

function setText(id: string, text: string, tone: "" | "good" | "warn" | "bad" = ""): void {
  const el = $(id);
  el.textContent = text;
  el.className = el.className.replace(/\b(good|warn|bad)\b/g, "").trim() + (tone ? ` ${tone}` : "");
}

function showStatus(status: Status): void {
  const conn = $("pill-conn");
  if (!status.online) {
    conn.textContent = "Offline";
    conn.className = "pill pill-bad";
  } else if (status.connected) {
    conn.textContent = "Live";
    conn.className = "pill pill-ok";
  } else {
    conn.textContent = "Connecting…";
    conn.className = "pill pill-wait";
  }
  const pending = $("pill-pending");
  pending.textContent = status.pendingWrites ? `${status.pendingWrites} pending` : "All saved";
  pending.className = `pill ${status.pendingWrites ? "pill-wait" : "pill-ok"}`;
  const tab = $("pill-tab");
  tab.textContent = status.tab === "follower" ? "Shared connection" : "Own connection";
  tab.title =
    status.tab === "follower"
      ? "Another window of this site holds the connection; this one talks to it"
      : "This window holds the connection for every window of this site";

  setText("st-online", status.online ? "online" : "offline", status.online ? "good" : "bad");
  setText("st-connected", status.connected ? "connected" : "disconnected", status.connected ? "good" : "warn");
  setText("st-role", status.role);
  setText("st-tab", status.tab === "follower" ? "via owner tab" : status.tab);
  setText("st-applied", status.appliedLsn.toLocaleString());
  setText("st-leader", status.leaderLsn.toLocaleString());
  setText("st-lag", status.lag.toLocaleString(), status.lag > 0 ? "warn" : "");
  setText("st-pending", status.pendingWrites.toLocaleString(), status.pendingWrites > 0 ? "warn" : "");
  setText("st-rebootstraps", status.rebootstraps.toLocaleString());
  // The replica keeps its last error after it recovers: shown in red only while it matters.
  const error = status.lastError;
  setText(
    "st-error",
    error ? `${status.connected ? "earlier: " : ""}${error.code}: ${error.message}` : "none",
    error && !status.connected ? "bad" : "",
  );

  if (!status.online) showBanner("You are offline. Keep going: notes are saved here and sent when the network is back.", "offline");
  else if ($("banner").classList.contains("offline")) showBanner("");
  if (status.pendingWrites === 0 && status.connected && unconfirmed.size > 0) {
    unconfirmed.clear();
    saveUnconfirmed();
    render();
  }
}

showStatus(db.status);
db.on("status", showStatus);
window.addEventListener("online", () => showStatus(db.status));
window.addEventListener("offline", () => showStatus(db.status));

let lastApplied = db.status.appliedLsn;
let lastSampleAt = performance.now();
setInterval(() => {
  const status = db.status;
  const now = performance.now();
  const rate = Math.max(0, status.appliedLsn - lastApplied) / ((now - lastSampleAt) / 1000);
  lastApplied = status.appliedLsn;
  lastSampleAt = now;
  chart.push({ rate, lag: status.lag });
  showStatus(status);
}, SAMPLE_MS);
chart.draw();
// Relative times ("12 s ago") stay fresh.
setInterval(render, 15_000);
