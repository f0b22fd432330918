// `cstore/react`: React bindings for a replica. A provider hands a `Db` to the tree; hooks
// turn live queries (`collection.watch`) into state, so a component re-renders when a local or
// a replicated write changes what it shows.
//
//   <CstoreProvider open={() => openReplica(url)}>     opens after the first render, in the
//     │                                                browser only; closes on unmount
//     └─ useQuery("notes", {filter}) ── effect ──► db.collection("notes").watch(query, cb)
//          { data, loading, error }   ◄── cb(docs) ── every batch that changes the result
//                                      cleanup ──► the watch's unsubscribe
//
// Everything that touches the replica runs in effects, never during render: server rendering
// (`renderToString`, where effects do not run) sees `loading` and never opens IndexedDB, and
// StrictMode's mount-unmount-mount leaves exactly one watch per hook. Plain `createElement`
// (no JSX) keeps the build a single tsc pass; this module imports only React and the errors
// module at run time, not the wasm replica.

import {
  createContext,
  createElement,
  useContext,
  useEffect,
  useMemo,
  useRef,
  useState,
  type ReactElement,
  type ReactNode,
} from "react";

import type { Db } from "./db.js";
import { CstoreError } from "./errors.js";
import type { AnyDocument, Document, Query, Status } from "./types.js";

/** What the provider gives the hooks: the database once it is open, or why it did not open. */
export interface CstoreContextValue {
  /** The open database; `null` while it opens (and always during server rendering). */
  db: Db | null;
  /** Why `open` failed, if it did. */
  error: CstoreError | null;
}

const CstoreContext = createContext<CstoreContextValue | null>(null);
CstoreContext.displayName = "CstoreContext";

/** Props of `CstoreProvider`: pass either an open `db` or an `open` function. */
export interface CstoreProviderProps {
  /**
   * A database the app opened (and closes) itself; `null` while it is not open yet. Takes
   * precedence over `open`.
   */
  db?: Db | null;
  /**
   * Opens the database: called once, after the provider's first render in the browser (never
   * during server rendering). The provider closes that database when it unmounts. Later
   * changes of `open` are ignored: to open another database, remount the provider (`key`).
   */
  open?: () => Promise<Db>;
  children?: ReactNode;
}

/** Makes a replica available to `useQuery`, `useDoc`, `useStatus` and `useDb` below it. */
export function CstoreProvider(props: CstoreProviderProps): ReactElement {
  const opened = useOpened(props.db === undefined ? props.open : undefined);
  const given = props.db;
  const value = useMemo<CstoreContextValue>(
    () => (given !== undefined ? { db: given, error: null } : opened),
    [given, opened],
  );
  return createElement(CstoreContext.Provider, { value }, props.children);
}

/** How long a closed provider's database stays open in case the same provider mounts again. */
const CLOSE_DELAY_MS = 0;

interface OwnedDb {
  promise: Promise<Db>;
  closeTimer: ReturnType<typeof setTimeout> | undefined;
}

/**
 * The database `open` resolves to, opened in an effect. StrictMode runs effects twice
 * (mount, unmount, mount) on the same component: the unmount only schedules the close, and
 * the second mount cancels it and keeps the same database, so one replica is opened, not two.
 */
function useOpened(open: (() => Promise<Db>) | undefined): CstoreContextValue {
  const [state, setState] = useState<CstoreContextValue>(NOT_OPEN);
  const first = useRef(open);
  const owned = useRef<OwnedDb | null>(null);
  useEffect(() => {
    const openDb = first.current;
    if (!openDb) return undefined;
    let current = owned.current;
    if (current && current.closeTimer !== undefined) {
      clearTimeout(current.closeTimer);
      current.closeTimer = undefined;
    } else {
      current = { promise: Promise.resolve().then(openDb), closeTimer: undefined };
      owned.current = current;
    }
    let mounted = true;
    current.promise.then(
      (db) => mounted && setState({ db, error: null }),
      (e: unknown) => mounted && setState({ db: null, error: CstoreError.from(e) }),
    );
    const mine = current;
    return () => {
      mounted = false;
      mine.closeTimer = setTimeout(() => {
        if (owned.current === mine) owned.current = null;
        mine.promise.then(
          (db) => db.close(),
          () => undefined,
        );
      }, CLOSE_DELAY_MS);
    };
  }, []);
  return state;
}

const NOT_OPEN: CstoreContextValue = { db: null, error: null };

/** The provider's database and error (`db` is `null` while it opens, and during SSR). */
export function useCstore(): CstoreContextValue {
  const value = useContext(CstoreContext);
  if (value === null) {
    throw new Error("cstore/react: no <CstoreProvider> above this component");
  }
  return value;
}

/** The provider's database, or `null` while it opens (and during server rendering). */
export function useDb(): Db | null {
  return useCstore().db;
}

/** What `useQuery` and `useDoc` return. */
export interface LiveState<D> {
  /** The current result; `undefined` while loading, after an error, and during SSR. */
  data: D | undefined;
  /** No result for the current query (or database) yet. */
  loading: boolean;
  /** Why the query (or opening the database) failed; the hook then stops watching. */
  error: CstoreError | null;
}

/** Options of `useQuery` and `useDoc`. */
export interface LiveOptions {
  /** `false`: do not query (the state is `{data: undefined, loading: false}`). Default `true`. */
  enabled?: boolean;
  /** Use this database instead of the provider's (then no provider is needed). */
  db?: Db | null;
}

/**
 * The documents of `collection` that match `query`, kept current: the component re-renders
 * after every local or replicated change to the result. The query is compared by value
 * (`JSON.stringify`), so an inline object literal does not re-subscribe on each render.
 */
export function useQuery<T extends Document = AnyDocument>(
  collection: string,
  query: Query<T> = {},
  options: LiveOptions = {},
): LiveState<T[]> {
  return useLive<T, T[]>(collection, query, options, allDocs);
}

/**
 * The document `id` of `collection`, kept current: `data` is the document, `null` when there
 * is none, `undefined` while loading. A nullish `id` queries nothing.
 */
export function useDoc<T extends Document = AnyDocument>(
  collection: string,
  id: string | null | undefined,
  options: LiveOptions = {},
): LiveState<T | null> {
  const enabled = (options.enabled ?? true) && id !== null && id !== undefined;
  const query = { filter: { _id: id ?? "" }, limit: 1 } as Query<T>;
  return useLive<T, T | null>(collection, query, { ...options, enabled }, firstDoc);
}

function allDocs<T>(docs: T[]): T[] {
  return docs;
}

function firstDoc<T>(docs: T[]): T | null {
  return docs[0] ?? null;
}

interface LiveResult<D> {
  db: Db;
  key: string;
  data: D | undefined;
  error: CstoreError | null;
}

const IDLE: LiveState<never> = { data: undefined, loading: false, error: null };
const LOADING: LiveState<never> = { data: undefined, loading: true, error: null };

/** One live query in an effect; its result counts only for the (db, key) it was made for. */
function useLive<T extends Document, D>(
  collection: string,
  query: Query<T>,
  options: LiveOptions,
  select: (docs: T[]) => D,
): LiveState<D> {
  const context = useContext(CstoreContext);
  const fromOptions = options.db !== undefined;
  if (!fromOptions && context === null) {
    throw new Error(`cstore/react: a hook on "${collection}" needs a <CstoreProvider> above it or options.db`);
  }
  const db = fromOptions ? (options.db ?? null) : (context?.db ?? null);
  const openError = fromOptions ? null : (context?.error ?? null);
  const enabled = options.enabled ?? true;
  const key = JSON.stringify([collection, query]);
  const [result, setResult] = useState<LiveResult<D> | null>(null);

  useEffect(() => {
    if (!enabled || db === null) return undefined;
    let live = true;
    const [name, q] = JSON.parse(key) as [string, Query<T>];
    const failed = (error: CstoreError) => {
      if (live) setResult({ db, key, data: undefined, error });
    };
    let stop: (() => void) | undefined;
    try {
      stop = db.collection<T>(name).watch(
        q,
        (docs) => {
          if (live) setResult({ db, key, data: select(docs), error: null });
        },
        { onError: failed },
      );
    } catch (e) {
      failed(CstoreError.from(e));
    }
    return () => {
      live = false;
      stop?.();
    };
    // Not a dependency: `select` is one of the two module functions above, fixed per hook.
  }, [db, key, enabled]);

  if (!enabled) return IDLE;
  if (openError) return { data: undefined, loading: false, error: openError };
  if (db === null || result === null || result.db !== db || result.key !== key) return LOADING;
  return { data: result.data, loading: false, error: result.error };
}

/**
 * The replica's sync status (online, lag, pending writes…), re-rendering on each change;
 * `null` while the database opens and during server rendering.
 */
export function useStatus(options: Pick<LiveOptions, "db"> = {}): Status | null {
  const context = useContext(CstoreContext);
  if (options.db === undefined && context === null) {
    throw new Error("cstore/react: useStatus needs a <CstoreProvider> above it or options.db");
  }
  const db = options.db !== undefined ? options.db : (context?.db ?? null);
  const [status, setStatus] = useState<{ db: Db; status: Status } | null>(null);
  useEffect(() => {
    if (db === null) return undefined;
    setStatus({ db, status: db.status });
    return db.on("status", (s) => setStatus({ db, status: s }));
  }, [db]);
  return status !== null && status.db === db ? status.status : null;
}
