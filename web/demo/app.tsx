// The demo: a shared notes board on the `cstore` package and its React binding
// (`cstore/react`). Every note lives in the browser replica (IndexedDB), so the board works
// offline; writes sync to the server and from there to every other window. Served by a member
// of a cluster, the page follows every member (members.ts) and shows them in a panel, so a
// leader can be killed under it: the page keeps reading, queues writes during the election
// and sends them after it, and the chart shows the gap.
//
//   discover(location.origin) ──► urls ──► <CstoreProvider open={openReplica(urls)}>
//                                            ├─ <Board>         useQuery("notes"), writes
//                                            ├─ <ClusterPanel>  every member's /v1/status
//                                            ├─ <StatusPanel>   useStatus()
//                                            └─ <ChartCard>     a sample of the status per second
//
// Tests drive the page through its controls and read `window.cstoreDemo` (the open database
// and the notes collection) and `window.cstoreDemoFollowing` (what the page follows).

import { StrictMode, useCallback, useEffect, useRef, useState } from "react";
import { createRoot } from "react-dom/client";

import { openReplica, type Db } from "cstore";
import { CstoreProvider, useCstore, useStatus } from "cstore/react";

import { Board, describe, TAB_NAME } from "./board.js";
import { discover, type Following } from "./members.js";
import { ChartCard, ClusterPanel, Pills, StatusPanel, useCluster } from "./panels.js";

// The service worker keeps the page itself available offline (the data is in IndexedDB).
navigator.serviceWorker?.register("sw.js").catch((e) => console.warn("no service worker:", e));

interface Banner {
  text: string;
  kind: "error" | "offline";
}

function App({ following }: { following: Following }) {
  const { db, error: openError } = useCstore();
  const status = useStatus();
  const cluster = useCluster(following.members);
  const [banner, setBanner] = useState<Banner | null>(null);
  const onError = useCallback((text: string) => setBanner({ text, kind: "error" }), []);

  useEffect(() => {
    if (db === null) return undefined;
    const demo = window as unknown as { cstoreDemo?: unknown };
    demo.cstoreDemo = { db, notes: db.collection("notes") };
    return db.on("rejected", (rejected) =>
      onError(`The server refused a write (${rejected.code}): ${rejected.message}. It was rolled back here.`),
    );
  }, [db, onError]);

  let shown: Banner | null = banner;
  if (openError) shown = { text: `Could not open the replica: ${describe(openError)}`, kind: "error" };
  else if (status !== null && !status.online) {
    shown = { text: "You are offline. Keep going: notes are saved here and sent when the network is back.", kind: "offline" };
  }

  return (
    <>
      <header className="topbar">
        <div className="brand">
          <span className="logo" aria-hidden="true"></span>
          <div>
            <h1>Collection Store</h1>
            <p className="tagline">
              An offline-first notes board on a browser replica
              {following.members.length > 0 ? ` of a ${following.members.length}-member cluster` : ""}
            </p>
          </div>
        </div>
        {openError ? (
          <div className="pills">
            <span className="pill pill-bad" data-testid="connection">
              Not started
            </span>
          </div>
        ) : (
          <Pills status={status} />
        )}
      </header>

      <div
        id="banner"
        className={`banner${shown?.kind === "offline" ? " offline" : ""}`}
        hidden={shown === null}
        data-testid="banner"
      >
        {shown?.text}
      </div>

      <main className="layout">
        <Board onError={onError} />
        <aside className="side">
          {following.members.length > 0 && <ClusterPanel members={following.members} cluster={cluster} status={status} />}
          <StatusPanel status={status} />
          <ChartCard status={status} cluster={cluster} clustered={following.members.length > 0} />
          <Writer db={db} />
          <Tour clustered={following.members.length > 0} />
        </aside>
      </main>
    </>
  );
}

/** How often "Keep writing" writes. */
const WRITER_EVERY_MS = 200;

/**
 * "Keep writing": a small document every 200 ms (into `ticks`, not the board), so the chart
 * has traffic to show and a failover shows as a gap, then a burst when the queue drains.
 */
function Writer({ db }: { db: Db | null }) {
  const [on, setOn] = useState(false);
  const [written, setWritten] = useState(0);
  const [failed, setFailed] = useState<string | null>(null);
  const seq = useRef(0);
  useEffect(() => {
    if (!on || db === null) return undefined;
    const ticks = db.collection("ticks");
    const timer = setInterval(() => {
      const n = ++seq.current;
      ticks.insert({ n, at: Date.now(), author: TAB_NAME }).then(
        () => setWritten((w) => w + 1),
        (e: unknown) => setFailed(describe(e)),
      );
    }, WRITER_EVERY_MS);
    return () => clearInterval(timer);
  }, [on, db]);
  return (
    <section className="card writer" aria-label="Writer">
      <h2>Traffic</h2>
      <button type="button" className="writer-toggle" data-testid="writer" onClick={() => setOn(!on)} disabled={db === null}>
        {on ? "Stop writing" : `Keep writing (${1000 / WRITER_EVERY_MS}/s)`}
      </button>
      <span className="writer-count" data-testid="writer-count">
        {written} written{failed ? ` · last failure: ${failed}` : ""}
      </span>
    </section>
  );
}

function Tour({ clustered }: { clustered: boolean }) {
  return (
    <section className="card tour">
      <h2>Try it</h2>
      <ol>
        <li>Open this page in a second window: notes appear in both within a blink.</li>
        <li>Go offline (DevTools → Network → Offline) and keep editing: writes stay pending here.</li>
        <li>Reload while offline: your notes are still there (IndexedDB).</li>
        <li>Come back online: pending writes are sent, both windows converge.</li>
        {clustered && (
          <li>
            Press “Keep writing”, then run <code>scripts/cluster.sh kill-leader</code>: the panel shows the election and
            the new leader, the chart a shaded gap, and the queued writes go out after it.
          </li>
        )}
      </ol>
    </section>
  );
}

const following = await discover(location.origin);
(window as unknown as { cstoreDemoFollowing: Following }).cstoreDemoFollowing = following;
const open = () => openReplica(following.urls, { name: "cstore-demo" });

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <CstoreProvider open={open}>
      <App following={following} />
    </CstoreProvider>
  </StrictMode>,
);
