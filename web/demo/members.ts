// Which servers the page follows, and what each of them says about the cluster.
//
// The page needs no configuration: the member that served it lists the cluster in its
// `/v1/status` (`members`, docs/HTTP_API.md "Cluster mode"), and the replica is opened on all
// of them (`openReplica(urls)`), so it moves to another member when one dies. A single server
// (no `members`) is followed alone, as before. The list is remembered in localStorage, so a
// page loaded offline (from the service worker) opens the replica on the same members.
//
//   page load ── GET /v1/status (this origin) ──► members? ── yes ─► urls = every member's URL
//                      │ fails (offline, down)          └─ no ──► url = this origin
//                      └──► the list remembered from the last visit, else this origin
//
// The cluster panel polls every member's `/v1/status` (cross-origin: the server allows any
// origin) and shows a member that does not answer as down.

/** A member as the cluster's list names it. */
export interface Member {
  id: string;
  url: string;
}

/** What the page follows: one server (`urls` a string) or a cluster's members. */
export interface Following {
  /** What `openReplica` gets. */
  urls: string | string[];
  /** The cluster's members (empty for a single server). */
  members: Member[];
  /** Where the list came from: this member's status, the last visit, or neither. */
  source: "status" | "remembered" | "single";
}

/** One member as its own `/v1/status` describes it, or down. */
export interface MemberState extends Member {
  /** It answered this poll. */
  up: boolean;
  /** `leader`, `follower`, `candidate`, `learner`, or `down`. */
  role: string;
  term: number | null;
  /** The member it names as the leader. */
  leaderId: string | null;
  appliedLsn: number | null;
}

/** One poll of every member. */
export interface ClusterState {
  members: MemberState[];
  /** The member that says it leads (the highest term wins if two do, e.g. a deposed one). */
  leader: MemberState | null;
  /** The highest term any member reports. */
  term: number | null;
}

const MEMBERS_KEY = "cstore-demo:members";
/** How long a status request may take before the member counts as down. */
export const STATUS_TIMEOUT_MS = 1_000;

interface StatusBody {
  role?: string;
  term?: number;
  node_id?: string;
  leader_id?: string | null;
  applied_lsn?: number;
  members?: Array<{ id: number | string; url: string }>;
}

async function fetchStatus(baseUrl: string): Promise<StatusBody> {
  const res = await fetch(`${baseUrl}/v1/status`, { cache: "no-store", signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) });
  if (!res.ok) throw new Error(`${baseUrl}/v1/status answered ${res.status}`);
  return (await res.json()) as StatusBody;
}

/**
 * The servers to follow, from the status of the member at `origin` (the page's own server),
 * with that member first.
 */
export async function discover(origin: string): Promise<Following> {
  try {
    const status = await fetchStatus(origin);
    const members = (status.members ?? []).map((m) => ({ id: String(m.id), url: m.url.replace(/\/+$/, "") }));
    if (members.length === 0) {
      localStorage.removeItem(MEMBERS_KEY);
      return { urls: origin, members, source: "single" };
    }
    localStorage.setItem(MEMBERS_KEY, JSON.stringify(members));
    return { urls: ownFirst(members, origin, status.node_id), members, source: "status" };
  } catch {
    const remembered = rememberedMembers();
    if (remembered.length > 0) return { urls: ownFirst(remembered, origin, undefined), members: remembered, source: "remembered" };
    return { urls: origin, members: [], source: "single" };
  }
}

function rememberedMembers(): Member[] {
  try {
    const list = JSON.parse(localStorage.getItem(MEMBERS_KEY) ?? "[]") as unknown;
    if (!Array.isArray(list)) return [];
    return list.filter((m): m is Member => typeof m?.id === "string" && typeof m?.url === "string");
  } catch {
    return [];
  }
}

/** The members' URLs, the one that served the page first. */
function ownFirst(members: Member[], origin: string, ownId: string | undefined): string[] {
  const isOwn = (m: Member) => m.id === ownId || m.url === origin;
  return [...members.filter(isOwn), ...members.filter((m) => !isOwn(m))].map((m) => m.url);
}

/** Asks every member for its status at once; one that fails or is slow is down. */
export async function poll(members: Member[]): Promise<ClusterState> {
  const states = await Promise.all(
    members.map(async (m): Promise<MemberState> => {
      try {
        const s = await fetchStatus(m.url);
        return {
          ...m,
          up: true,
          role: s.role ?? "unknown",
          term: s.term ?? null,
          leaderId: s.leader_id ?? null,
          appliedLsn: s.applied_lsn ?? null,
        };
      } catch {
        return { ...m, up: false, role: "down", term: null, leaderId: null, appliedLsn: null };
      }
    }),
  );
  const leaders = states.filter((s) => s.role === "leader").sort((a, b) => (b.term ?? 0) - (a.term ?? 0));
  const terms = states.map((s) => s.term).filter((t): t is number => t !== null);
  return { members: states, leader: leaders[0] ?? null, term: terms.length ? Math.max(...terms) : null };
}
