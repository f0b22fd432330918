// The messages tabs of one origin exchange over their BroadcastChannel (see hub.ts).
//
// Every message names its sender (`from`, a tab id); messages meant for one tab name it in
// `to`, and every other tab ignores them. Errors travel as plain `{code, message}`: the
// structured clone of an `Error` drops its `code`.

import type { ErrorInfo } from "./types.js";
import type { WasmRejected, WasmStatus } from "./wasm.js";

/** The replica calls a follower tab forwards to the owner. */
export type Method = "get" | "find" | "count" | "insert" | "put" | "update" | "remove" | "flush";

/** Every message on the channel. */
export type Message =
  /** A new tab asks who owns the replica. */
  | { t: "hello"; from: string }
  /** The owner introduces itself (to a hello, and once when it takes over). */
  | { t: "owner"; from: string; status: WasmStatus }
  /** A call for the owner. */
  | { t: "req"; from: string; to: string; id: number; method: Method; args: unknown[] }
  /** The owner's answer to a call. */
  | { t: "res"; from: string; to: string; id: number; ok: true; value: unknown }
  | { t: "res"; from: string; to: string; id: number; ok: false; error: ErrorInfo }
  /** A follower's live query, kept by the owner until unwatch or bye. */
  | { t: "watch"; from: string; to: string; key: number; collection: string; query: object }
  | { t: "unwatch"; from: string; to: string; key: number }
  /** The owner's results for a follower's live query. */
  | { t: "docs"; from: string; to: string; key: number; docs: object[] }
  /** A follower's live query failed (bad query, too many watches). */
  | { t: "watch-error"; from: string; to: string; key: number; error: ErrorInfo }
  /** The owner's replica status changed. */
  | { t: "status"; from: string; status: WasmStatus }
  /** The leader refused a write (every tab reports it). */
  | { t: "rejected"; from: string; rejected: WasmRejected }
  /** A follower tab goes away: the owner drops its live queries. */
  | { t: "bye"; from: string };

/** Whether a value received on the channel looks like one of our messages. */
export function isMessage(data: unknown): data is Message {
  return (
    typeof data === "object" &&
    data !== null &&
    typeof (data as { t?: unknown }).t === "string" &&
    typeof (data as { from?: unknown }).from === "string"
  );
}
