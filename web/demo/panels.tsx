// The side panels: the cluster (every member's role and term, polled from its /v1/status), the
// replica's status (`useStatus`), and the chart of the last 60 seconds. The header's pills
// are here too: they read the same status.

import { useEffect, useRef, useState } from "react";

import type { Status } from "cstore";

import { ReplicationChart, type Sample } from "./chart.js";
import { poll, type ClusterState, type Member } from "./members.js";

/** How often the cluster panel asks every member for its status. */
const POLL_MS = 500;
/** One chart sample per second, 60 on the chart. */
const SAMPLE_MS = 1_000;

/** Every member's status, polled while mounted; `null` before the first answer. */
export function useCluster(members: Member[]): ClusterState | null {
  const [state, setState] = useState<ClusterState | null>(null);
  const key = JSON.stringify(members);
  useEffect(() => {
    if (members.length === 0) return undefined;
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const round = async () => {
      const next = await poll(members);
      if (!live) return;
      setState(next);
      timer = setTimeout(round, POLL_MS);
    };
    void round();
    return () => {
      live = false;
      clearTimeout(timer);
    };
    // `key` stands for `members` (compared by value).
  }, [key]);
  return state;
}

const hostOf = (url: string) => url.replace(/^https?:\/\//, "");

/** The kill command shown in the panel (a browser cannot kill a server, and should not). */
const KILL_COMMAND = "scripts/cluster.sh kill-leader";

export function ClusterPanel({
  members,
  cluster,
  status,
}: {
  members: Member[];
  cluster: ClusterState | null;
  status: Status | null;
}) {
  const own = location.origin;
  const rows = cluster?.members ?? members.map((m) => ({ ...m, up: false, role: "…", term: null, leaderId: null, appliedLsn: null }));
  const leader = cluster?.leader ?? null;
  return (
    <section className="card cluster" aria-label="Cluster" data-testid="cluster">
      <div className="chart-head">
        <h2>Cluster · {members.length} members</h2>
        <span className="term" data-testid="cluster-term">
          term {cluster?.term ?? "—"}
        </span>
      </div>
      <table className="members">
        <tbody>
          {rows.map((m) => {
            const follows = status?.member === m.url;
            return (
              <tr
                key={m.id}
                data-testid="member"
                data-id={m.id}
                data-role={m.role}
                className={`${m.up ? "" : "down"}${leader?.id === m.id ? " leads" : ""}`}
              >
                <td className="member-id">{m.id}</td>
                <td className="member-url">
                  {m.url === own ? <strong title="This page was served by this member">{hostOf(m.url)}</strong> : hostOf(m.url)}
                </td>
                <td>
                  <span className={`role role-${m.role}`}>{leader?.id === m.id ? "★ leader" : m.role}</span>
                </td>
                <td className="num" title="Applied LSN">
                  {m.appliedLsn ?? ""}
                </td>
                <td className="follows" title={follows ? "The replica in this page streams from this member" : ""}>
                  {follows ? "⇄ replica" : ""}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <p className="cluster-note" data-testid="cluster-leader">
        {cluster === null ? "Asking the members…" : leader ? `Member ${leader.id} leads.` : "No leader: an election is under way."}
      </p>
      <p className="cluster-note">
        Kill the leader from a shell: <code>{KILL_COMMAND}</code>; bring it back with{" "}
        <code>scripts/cluster.sh restart N</code>. This page keeps reading, queues your writes while there is no
        leader and sends them after the election.
      </p>
    </section>
  );
}

export function Pills({ status }: { status: Status | null }) {
  if (status === null) {
    return (
      <div className="pills">
        <span className="pill pill-wait" data-testid="connection">
          Starting…
        </span>
      </div>
    );
  }
  const conn = !status.online
    ? { text: "Offline", cls: "pill-bad" }
    : status.connected
      ? { text: "Live", cls: "pill-ok" }
      : { text: "Connecting…", cls: "pill-wait" };
  return (
    <div className="pills">
      <span className={`pill ${conn.cls}`} data-testid="connection">
        {conn.text}
      </span>
      <span className={`pill ${status.pendingWrites ? "pill-wait" : "pill-ok"}`} data-testid="pending">
        {status.pendingWrites ? `${status.pendingWrites} pending` : "All saved"}
      </span>
      <span
        className="pill pill-quiet"
        data-testid="tab-role"
        title={
          status.tab === "follower"
            ? "Another window of this site holds the connection; this one talks to it"
            : "This window holds the connection for every window of this site"
        }
      >
        {status.tab === "follower" ? "Shared connection" : "Own connection"}
      </span>
    </div>
  );
}

type Tone = "" | "good" | "warn" | "bad";

function Row({ label, id, value, tone = "", num = false }: { label: string; id: string; value: string; tone?: Tone; num?: boolean }) {
  return (
    <>
      <dt>{label}</dt>
      <dd id={id} data-testid={id} className={[num ? "num" : "", tone].filter(Boolean).join(" ")}>
        {value}
      </dd>
    </>
  );
}

export function StatusPanel({ status }: { status: Status | null }) {
  if (status === null) {
    return (
      <section className="card status" aria-label="Replica status">
        <h2>Replica status</h2>
        <p className="cluster-note">Opening the replica…</p>
      </section>
    );
  }
  const error = status.lastError;
  const n = (v: number) => v.toLocaleString();
  return (
    <section className="card status" aria-label="Replica status">
      <h2>Replica status</h2>
      <dl>
        <Row label="Network" id="st-online" value={status.online ? "online" : "offline"} tone={status.online ? "good" : "bad"} />
        <Row
          label="Sync session"
          id="st-connected"
          value={status.connected ? "connected" : "disconnected"}
          tone={status.connected ? "good" : "warn"}
        />
        <Row label="Streams from" id="st-member" value={status.member ? hostOf(status.member) : "—"} />
        <Row label="Member switches" id="st-switches" value={n(status.memberSwitches)} num tone={status.memberSwitches > 0 ? "warn" : ""} />
        <Row label="Role" id="st-role" value={status.role} />
        <Row label="This tab" id="st-tab" value={status.tab === "follower" ? "via owner tab" : status.tab} />
        <Row label="Applied LSN" id="st-applied" value={n(status.appliedLsn)} num />
        <Row label="Leader LSN" id="st-leader" value={n(status.leaderLsn)} num />
        <Row label="Lag" id="st-lag" value={n(status.lag)} num tone={status.lag > 0 ? "warn" : ""} />
        <Row label="Pending writes" id="st-pending" value={n(status.pendingWrites)} num tone={status.pendingWrites > 0 ? "warn" : ""} />
        <Row label="Re-bootstraps" id="st-rebootstraps" value={n(status.rebootstraps)} num tone={status.rebootstraps > 0 ? "bad" : ""} />
        {status.refusedMembers.length > 0 && (
          <Row
            label="Refused"
            id="st-refused"
            value={status.refusedMembers.map((r) => `${hostOf(r.url)} (${r.code})`).join(", ")}
            tone="bad"
          />
        )}
        {/* The replica keeps its last error after it recovers: red only while it matters. */}
        <dt>Last error</dt>
        <dd id="st-error" data-testid="st-error" className={`error-text${error && !status.connected ? " bad" : ""}`}>
          {error ? `${status.connected ? "earlier: " : ""}${error.code}: ${error.message}` : "none"}
        </dd>
      </dl>
    </section>
  );
}

/**
 * The chart card: one sample per second from the replica's status, with the seconds in which
 * the cluster had no leader, the replica no connection, or it switched members shaded. A
 * failover shorter than a second still shows: the gap is remembered until the next sample.
 */
export function ChartCard({ status, cluster, clustered }: { status: Status | null; cluster: ClusterState | null; clustered: boolean }) {
  const gapLabel = clustered ? "no leader" : "no connection";
  const canvas = useRef<HTMLCanvasElement>(null);
  const latest = useRef<Status | null>(status);
  const gapSeen = useRef(false);
  /** Whether the replica has been connected: before that, not being connected is no gap. */
  const started = useRef(false);
  /** The most pending writes seen since the last sample (a queue can fill and drain within one). */
  const pendingPeak = useRef(0);
  useEffect(() => {
    latest.current = status;
    if (status?.connected) started.current = true;
    if (status !== null && !status.connected && started.current) gapSeen.current = true;
    if (status !== null) pendingPeak.current = Math.max(pendingPeak.current, status.pendingWrites);
  }, [status]);
  useEffect(() => {
    if (cluster !== null && cluster.members.length > 0 && cluster.leader === null) gapSeen.current = true;
  }, [cluster]);

  useEffect(() => {
    const c = new ReplicationChart(canvas.current!, 60, gapLabel);
    (window as unknown as { cstoreDemoChart?: ReplicationChart }).cstoreDemoChart = c;
    c.draw();
    let last: { applied: number; switches: number; at: number } | null = null;
    const timer = setInterval(() => {
      const s = latest.current;
      if (s === null) return;
      const now = performance.now();
      const rate = last ? Math.max(0, s.appliedLsn - last.applied) / ((now - last.at) / 1000) : 0;
      const switched = last !== null && s.memberSwitches > last.switches;
      const down = started.current && !s.connected;
      const pending = Math.max(pendingPeak.current, s.pendingWrites);
      const sample: Sample = { rate, lag: s.lag, pending, gap: gapSeen.current || switched || down };
      gapSeen.current = false;
      pendingPeak.current = s.pendingWrites;
      last = { applied: s.appliedLsn, switches: s.memberSwitches, at: now };
      c.push(sample);
    }, SAMPLE_MS);
    const redraw = () => c.draw();
    window.addEventListener("resize", redraw);
    return () => {
      clearInterval(timer);
      window.removeEventListener("resize", redraw);
    };
  }, [gapLabel]);

  return (
    <section className="card chart-card" aria-label="Replication chart">
      <h2>Replication · 60 s</h2>
      <div className="legend">
        <span>
          <span className="key key-rate"></span>entries/s
        </span>
        <span>
          <span className="key key-lag"></span>lag
        </span>
        <span>
          <span className="key key-pending"></span>pending writes
        </span>
        <span>
          <span className="key key-gap"></span>
          {gapLabel}
        </span>
      </div>
      <canvas id="chart" ref={canvas} width={320} height={150} data-testid="chart"></canvas>
    </section>
  );
}
