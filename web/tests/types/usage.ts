// Compile-time checks of the published types (`npm test` runs tsc on this file, no output):
// what an app writes must type-check, and the `@ts-expect-error` lines must fail to.

import { CstoreError, openReplica, type Db, type Document, type Status } from "cstore";

interface Todo extends Document {
  title: string;
  done: boolean;
  tags: string[];
  due?: number;
}

export async function usage(): Promise<void> {
  const db: Db = await openReplica("http://127.0.0.1:7070", { token: "t", name: "app" });
  const todos = db.collection<Todo>("todos");

  const { id, pending }: { id: string; pending: boolean } = await todos.insert({ title: "a", done: false, tags: [] });
  await todos.insert({ _id: "own-id", title: "b", done: true, tags: ["x"] });
  // @ts-expect-error a required field is missing
  await todos.insert({ title: "c", done: false });
  // @ts-expect-error a field of the wrong type
  await todos.insert({ title: 1, done: false, tags: [] });

  const one: Todo | undefined = await todos.get(id);
  const title: string | undefined = one?.title;
  const open: Todo[] = await todos.find({
    filter: { done: false, title: { $in: ["a", "b"] }, due: { $exists: true }, "meta.owner": "me" },
    sort: [["due", 1], ["title", -1]],
    limit: 10,
    skip: 0,
  });
  await todos.find({ filter: { $or: [{ done: true }, { tags: { $ne: [] } }] }, sort: { title: 1 } });
  // @ts-expect-error an operator on a field takes the field's type
  await todos.find({ filter: { done: { $gt: "yes" } } });
  // @ts-expect-error sort directions are 1 or -1
  await todos.find({ sort: { title: 2 } });
  const n: number = await todos.count({ done: true });

  await todos.update(id, { done: true, due: null });
  // @ts-expect-error a patch field of the wrong type
  await todos.update(id, { done: "yes" });
  await todos.put({ _id: id, title: "replaced", done: false, tags: [] });
  await todos.remove(id);

  // An untyped collection takes any JSON fields.
  const loose = db.collection("loose");
  await loose.insert({ anything: 1, nested: { deep: [true] } });
  await loose.update("id", { anything: null, more: "x" });
  const looseDocs = await loose.find({ filter: { "nested.deep": true } });
  void looseDocs[0]?._id;

  const stop: () => void = todos.watch({ filter: { done: false } }, (docs: Todo[]) => void docs.length, {
    onError: (e: CstoreError) => void e.code,
  });
  stop();

  const status: Status = db.status;
  const fields: [boolean, number, number, number, string] = [
    status.online,
    status.appliedLsn,
    status.lag,
    status.pendingWrites,
    status.tab,
  ];
  db.on("status", (s) => void s.leaderLsn);
  db.on("rejected", (r) => void [r.seq, r.code, r.message]);
  db.on("tab", (tab) => void (tab === "owner"));
  // @ts-expect-error unknown event
  db.on("nope", () => {});
  await db.flush();
  await db.close();

  try {
    await todos.get("x");
  } catch (e) {
    if (e instanceof CstoreError && e.code === "closed") void e.message;
  }
  void [pending, title, open, n, fields];
}
