// Errors with a stable code: every failure the package reports is a `CstoreError`, whether it
// was thrown by the wasm replica (an `Error` with a `code` property), answered by the leader
// (its JSON error code), or raised here. Apps branch on `error.code`, never on messages.

import type { ErrorInfo } from "./types.js";

/** An error with a stable snake_case `code` (e.g. `unique_violation`, `closed`). */
export class CstoreError extends Error {
  /** The stable code. */
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = "CstoreError";
    this.code = code;
  }

  /** The error as plain data (to cross a BroadcastChannel, whose clone drops `code`). */
  toInfo(): ErrorInfo {
    return { code: this.code, message: this.message };
  }

  /** Any thrown value as a `CstoreError` (code `internal` when it carries none). */
  static from(error: unknown): CstoreError {
    if (error instanceof CstoreError) return error;
    if (typeof error === "object" && error !== null) {
      const { code, message } = error as { code?: unknown; message?: unknown };
      return new CstoreError(
        typeof code === "string" && code !== "" ? code : "internal",
        typeof message === "string" ? message : String(error),
      );
    }
    return new CstoreError("internal", String(error));
  }
}

/** Codes raised by this package itself (the others come from the replica or the leader). */
export const Codes = {
  /** The database was closed. */
  closed: "closed",
  /** The loaded wasm module has no `Replica` (a build without the browser replica). */
  unsupported: "unsupported",
  /** An argument has the wrong shape. */
  invalidArgument: "invalid_argument",
  /** `openReplica`'s URLs or options are unusable (an empty list, `httpUrl` with several URLs). */
  invalidOptions: "invalid_options",
  /** Too many calls wait for the owner tab. */
  tooManyRequests: "too_many_requests",
} as const;
