// The page of react.test.mjs, bundled once per React version (esbuild aliases `react` and
// `react-dom` to react18/react-dom18 or react19/react-dom19). It mounts a small notes app on
// `cstore/react` and exposes `window.cstoreReact` for the test: what each component rendered,
// how many live queries the wasm replica holds, and controls to mount, show and unmount.
//
// The live-query count is taken at the replica itself: `Replica.prototype.watch` / `unwatch`
// of the wasm module (the same module instance the package loads) are wrapped, so a hook that
// forgot to unsubscribe shows up as a watch id that is never released.

import { StrictMode, createElement as h, useState, version } from "react";
import { createRoot } from "react-dom/client";

import { openReplica } from "cstore";
import { CstoreProvider, useDoc, useQuery, useStatus } from "cstore/react";

import { Replica } from "../../pkg-web/cstore_wasm.js";

const active = new Set();
const counts = { watch: 0, unwatch: 0, open: 0, close: 0 };
const { watch, unwatch, close } = Replica.prototype;
Replica.prototype.watch = function (...args) {
  const id = watch.apply(this, args);
  counts.watch++;
  active.add(id);
  return id;
};
Replica.prototype.unwatch = function (id) {
  counts.unwatch++;
  active.delete(id);
  return unwatch.call(this, id);
};
Replica.prototype.close = function (...args) {
  counts.close++;
  return close.apply(this, args);
};

const renders = [];
let show = () => {};
let showDoc = () => {};

function Notes({ collection }) {
  const { data, loading, error } = useQuery(collection, { sort: { text: 1 } });
  renders.push({ c: "notes", loading, error: error?.code ?? null, texts: data?.map((d) => d.text) });
  return h(
    "section",
    null,
    h("p", { "data-testid": "notes-state" }, error ? `error ${error.code}` : loading ? "loading" : `ready ${data.length}`),
    h("ul", null, ...(data ?? []).map((d) => h("li", { key: d._id, "data-testid": "note" }, d.text))),
  );
}

function Doc({ collection, id }) {
  const { data, loading, error } = useDoc(collection, id);
  renders.push({ c: "doc", loading, error: error?.code ?? null, doc: data });
  const text = error ? `error ${error.code}` : loading ? "loading" : data === null ? "missing" : data.text;
  return h("p", { "data-testid": "doc" }, text);
}

function Bad({ collection }) {
  const { data, loading, error } = useQuery(collection, { filter: { text: { $regex: "x" } } });
  renders.push({ c: "bad", loading, error: error?.code ?? null, texts: data?.map((d) => d.text) });
  return h("p", { "data-testid": "bad" }, error ? `error ${error.code}` : loading ? "loading" : "no error");
}

function Status() {
  const status = useStatus();
  return h("p", { "data-testid": "status" }, status === null ? "opening" : status.connected ? "connected" : "offline");
}

function App({ collection, docId: firstDocId }) {
  const [extra, setExtra] = useState({ doc: false, bad: false });
  const [docId, setDocId] = useState(firstDocId);
  show = (which, on) => setExtra((e) => ({ ...e, [which]: on }));
  showDoc = setDocId;
  return h(
    "main",
    null,
    h(Status),
    h(Notes, { collection }),
    extra.doc ? h(Doc, { collection, id: docId }) : null,
    extra.bad ? h(Bad, { collection }) : null,
  );
}

let root = null;
let db = null;

window.cstoreReact = {
  version,
  renders,
  counts,
  activeWatches: () => active.size,
  /** Mounts the app on `collection` (in StrictMode when `strict`), with a provider that opens the replica. */
  mount({ collection, docId, strict, name }) {
    const open = () => {
      counts.open++;
      return openReplica(location.origin, { name }).then((opened) => (db = opened));
    };
    const app = h(CstoreProvider, { open }, h(App, { collection, docId }));
    root = createRoot(document.getElementById("root"));
    root.render(strict ? h(StrictMode, null, app) : app);
  },
  show: (which, on) => show(which, on),
  /** Points the useDoc component at another document. */
  showDoc: (id) => showDoc(id),
  unmount() {
    root.unmount();
    root = null;
  },
  db: () => db,
};
