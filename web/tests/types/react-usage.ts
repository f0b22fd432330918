// Compile-time checks of `cstore/react`'s published types (run with usage.ts by `npm test`).

import { createElement, type ReactElement } from "react";

import { openReplica, type CstoreError, type Db, type Document, type Status } from "cstore";
import { CstoreProvider, useDb, useDoc, useQuery, useStatus, type LiveState } from "cstore/react";

interface Todo extends Document {
  title: string;
  done: boolean;
}

export function Todos(): ReactElement {
  const { data, loading, error }: LiveState<Todo[]> = useQuery<Todo>("todos", {
    filter: { done: false },
    sort: { title: 1 },
    limit: 20,
  });
  const titles: string[] | undefined = data?.map((t) => t.title);
  const failed: CstoreError | null = error;
  // @ts-expect-error a filter on a field of the wrong type
  useQuery<Todo>("todos", { filter: { done: "no" } });
  const one = useDoc<Todo>("todos", "t1", { enabled: !loading });
  const doc: Todo | null | undefined = one.data;
  useDoc<Todo>("todos", null);
  const status: Status | null = useStatus();
  const db: Db | null = useDb();
  return createElement("p", null, `${titles?.length} ${failed?.code} ${doc?.title} ${status?.lag} ${db === null}`);
}

export const withOpen = createElement(CstoreProvider, { open: () => openReplica("http://127.0.0.1:7070") }, createElement(Todos));
export const withDb = (db: Db | null) => createElement(CstoreProvider, { db }, createElement(Todos));
// @ts-expect-error open returns a promise of a Db
export const badOpen = createElement(CstoreProvider, { open: () => 1 });
