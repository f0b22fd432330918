// What both entries (browser and node) export besides `openReplica`.

export { Collection, Db, type DbEvents, type WatchOptions } from "./db.js";
export { Codes, CstoreError } from "./errors.js";
export { newId } from "./hub.js";
export type { ServerUrls } from "./open.js";
export type * from "./types.js";
