// The notes board: add, edit, tick, delete, filter. The list is a live query (`useQuery`):
// every local or replicated write re-renders it. Writes apply locally at once and show a
// "pending" badge until the replica has no write left to confirm (also across an offline
// reload: the marks are kept in localStorage, the writes themselves in IndexedDB).

import { useEffect, useState, type FormEvent } from "react";

import { CstoreError, type Collection, type Document, type Status } from "cstore";
import { useDb, useQuery, useStatus } from "cstore/react";

/** A note on the board. */
export interface Note extends Document {
  text: string;
  done: boolean;
  createdAt: number;
  updatedAt: number;
  author: string;
}

type FilterName = "all" | "open" | "done";

export const TAB_NAME = `window ${Math.random().toString(16).slice(2, 6)}`;
const UNCONFIRMED_KEY = "cstore-demo:unconfirmed";
const NEWEST_FIRST = { sort: [["createdAt", -1]] as Array<[string, 1 | -1]> };

export function describe(error: unknown): string {
  const e = CstoreError.from(error);
  return `${e.message} (${e.code})`;
}

/**
 * Ids written here while writes were pending: shown as "pending" until the replica has no
 * pending write left. Kept in localStorage so the marks survive an offline reload.
 */
function useUnconfirmed(status: Status | null) {
  const [ids, setIds] = useState<ReadonlySet<string>>(
    () => new Set(JSON.parse(localStorage.getItem(UNCONFIRMED_KEY) ?? "[]") as string[]),
  );
  useEffect(() => {
    if (ids.size === 0) localStorage.removeItem(UNCONFIRMED_KEY);
    else localStorage.setItem(UNCONFIRMED_KEY, JSON.stringify([...ids].slice(-1000)));
  }, [ids]);
  const settled = status !== null && status.pendingWrites === 0 && status.connected;
  useEffect(() => {
    if (settled && ids.size > 0) setIds(new Set());
  }, [settled, ids]);
  const add = (id: string) => setIds((old) => new Set(old).add(id));
  const drop = (id: string) =>
    setIds((old) => {
      const next = new Set(old);
      next.delete(id);
      return next;
    });
  return { ids, add, drop };
}

export function Board({ onError }: { onError: (text: string) => void }) {
  const db = useDb();
  const status = useStatus();
  const notes = useQuery<Note>("notes", NEWEST_FIRST);
  const unconfirmed = useUnconfirmed(status);
  const [filter, setFilter] = useState<FilterName>("all");
  const [draft, setDraft] = useState("");
  const board = db?.collection<Note>("notes") ?? null;

  useEffect(() => {
    if (notes.error) onError(`Cannot read the notes: ${describe(notes.error)}`);
  }, [notes.error, onError]);

  /** Tracks a write for the "pending" badge and reports a local failure. */
  const write = (id: string, pending: Promise<unknown>) => {
    unconfirmed.add(id);
    pending.catch((error) => {
      unconfirmed.drop(id);
      onError(`Write failed: ${describe(error)}`);
    });
  };

  const add = (event: FormEvent) => {
    event.preventDefault();
    const text = draft.trim();
    if (text === "" || board === null) return;
    setDraft("");
    const now = Date.now();
    board
      .insert({ text, done: false, createdAt: now, updatedAt: now, author: TAB_NAME })
      .then(({ id }) => write(id, Promise.resolve()), (error) => onError(`Write failed: ${describe(error)}`));
  };

  const all = notes.data ?? [];
  const counts = { all: all.length, open: all.filter((n) => !n.done).length, done: 0 };
  counts.done = counts.all - counts.open;
  const shown = all.filter((n) => filter === "all" || (filter === "done") === n.done);
  const pendingNow = (status?.pendingWrites ?? 0) > 0;

  return (
    <section className="board" aria-label="Notes">
      <form id="add" className="add" autoComplete="off" onSubmit={add}>
        <input
          id="add-text"
          name="text"
          placeholder="Write a note and press Enter…"
          maxLength={500}
          data-testid="new-note"
          aria-label="New note"
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
        />
        <button type="submit" data-testid="add-note" disabled={board === null}>
          Add note
        </button>
      </form>
      <div className="filters" role="tablist">
        {(["all", "open", "done"] as const).map((name) => (
          <button
            key={name}
            type="button"
            className={`filter${filter === name ? " active" : ""}`}
            data-filter={name}
            onClick={() => setFilter(name)}
          >
            {name[0]!.toUpperCase() + name.slice(1)} <span data-count={name}>{counts[name]}</span>
          </button>
        ))}
      </div>
      <ul id="notes" className="notes" data-testid="notes">
        {board !== null &&
          shown.map((note) => (
            <NoteItem
              key={note._id}
              note={note}
              pending={pendingNow && unconfirmed.ids.has(note._id)}
              onWrite={write}
              board={board}
            />
          ))}
      </ul>
      {notes.data !== undefined && all.length === 0 && (
        <p id="empty" className="empty">
          No notes yet. Add one — it is saved in this browser at once, and synced to the server (and every other
          window) as soon as there is a connection.
        </p>
      )}
      {notes.loading && <p className="empty">Opening the local copy…</p>}
    </section>
  );
}

interface NoteItemProps {
  note: Note;
  pending: boolean;
  board: Collection<Note>;
  onWrite: (id: string, pending: Promise<unknown>) => void;
}

function NoteItem({ note, pending, board, onWrite }: NoteItemProps) {
  const [editing, setEditing] = useState(false);
  const [, tick] = useState(0);
  // Relative times ("12 s ago") stay fresh.
  useEffect(() => {
    const timer = setInterval(() => tick((n) => n + 1), 15_000);
    return () => clearInterval(timer);
  }, []);
  return (
    <li className={`note${note.done ? " done" : ""}`} data-id={note._id} data-testid="note">
      <input
        type="checkbox"
        checked={note.done}
        title={note.done ? "Mark as open" : "Mark as done"}
        onChange={(e) => onWrite(note._id, board.update(note._id, { done: e.target.checked, updatedAt: Date.now() }))}
      />
      <div>
        {editing ? (
          <EditText
            initial={note.text}
            onDone={(value) => {
              setEditing(false);
              if (value !== null && value !== "" && value !== note.text) {
                onWrite(note._id, board.update(note._id, { text: value, updatedAt: Date.now() }));
              }
            }}
          />
        ) : (
          <div className="text" title="Click to edit" onClick={() => setEditing(true)}>
            {note.text}
          </div>
        )}
        <div className="meta">
          <span>
            {note.author} · {ago(note.updatedAt)}
          </span>
          {pending && (
            <span className="badge" data-testid="pending-badge">
              pending
            </span>
          )}
        </div>
      </div>
      <button
        className="delete"
        type="button"
        title="Delete"
        aria-label="Delete note"
        onClick={() => onWrite(note._id, board.remove(note._id))}
      >
        ×
      </button>
    </li>
  );
}

/** The text being edited: Enter or leaving the field saves, Escape cancels (`null`). */
function EditText({ initial, onDone }: { initial: string; onDone: (value: string | null) => void }) {
  const [value, setValue] = useState(initial);
  const [finished, setFinished] = useState(false);
  const finish = (save: boolean) => {
    if (finished) return;
    setFinished(true);
    onDone(save ? value.trim() : null);
  };
  return (
    <input
      className="edit"
      value={value}
      maxLength={500}
      autoFocus
      onFocus={(e) => e.target.select()}
      onChange={(e) => setValue(e.target.value)}
      onKeyDown={(e) => {
        if (e.key === "Enter") finish(true);
        if (e.key === "Escape") finish(false);
      }}
      onBlur={() => finish(true)}
    />
  );
}

function ago(ms: number): string {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return new Date(ms).toLocaleString();
}
