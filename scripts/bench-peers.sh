#!/usr/bin/env bash
# Benchmarks cstore against real peers on this machine, in one run, through one load generator
# (target/release/cstore-peers), and writes the "Against peers" sections of BENCHMARKS.md and
# docs/bench/peers.png. Installs etcd 3.4, redis 7, PostgreSQL 15 and matplotlib from Debian
# when missing. cstore-peers runs: durable writes (single node against etcd, redis and
# PostgreSQL; 3 copies: leader + followers, a 3-member Raft cluster, 3 etcd members), failover
# (kill -9 of the leader, 20 trials each for cstore's Raft cluster and etcd), reads on 3
# members (local / linearizable), and recovery after kill -9.
# Then, in the same run: commit-to-replica latency, fan-out to 1,000 and 10,000 WebSocket
# replicas, a fresh follower's catch-up, and a browser replica's bootstrap against Dexie and
# PouchDB (when web/ is built). Takes about 13 minutes on 2 cores.
#
# Usage: scripts/bench.sh peers [--quick]   (the same as scripts/bench-peers.sh [--quick])
#   --quick: 3 s windows, 5 failover trials and 200,000 recovery entries (a smoke run; figures
#   not for publishing)
# The figures mean most on a quiet machine: the load average before and after is recorded.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION_S=8
ENTRIES=1000000
FAILOVER_TRIALS=20
RUN_KIND="a full run"
if [ "${1:-}" = "--quick" ]; then
  DURATION_S=3
  ENTRIES=200000
  FAILOVER_TRIALS=5
  RUN_KIND="a --quick smoke run (short windows, fewer entries and trials): not figures to quote"
fi
OUT="$ROOT/BENCHMARKS.md"
CHART="docs/bench/peers.png"
PY=/usr/bin/python3   # Debian's python, where python3-matplotlib installs
WORK="$(mktemp -d -t cstore-peers.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

PG_BIN=/usr/lib/postgresql/15/bin   # Debian's postgresql-15; cstore-peers runs it from here
say "peers: etcd, redis, postgres, wrk, matplotlib"
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
{ [ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/pgbench" ]; } || need+=(postgresql-15)
"$PY" -c 'import matplotlib' >/dev/null 2>&1 || need+=(python3-matplotlib)
if [ "${#need[@]}" -gt 0 ]; then
  say "installing ${need[*]}"
  as_root apt-get install -y -qq "${need[@]}" >/dev/null \
    || { as_root apt-get update -qq && as_root apt-get install -y -qq "${need[@]}" >/dev/null; }
fi

say "building release binaries"
cargo build --release -q -p cstore-server --bin cstore
cargo build --release -q -p cstore-tests --bin cstore-peers --bin cstore-fanout --bin cstore-follow-bench \
  --bin cstore-load
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/release"

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
STARTED="$(date -u '+%Y-%m-%d %H:%M UTC')"
say "running cstore-peers (${DURATION_S} s windows, ${FAILOVER_TRIALS} failover trials, ${ENTRIES} recovery entries)"
# The cstore clusters (3-copies rows, failover, reads) run this build's server.
CSTORE_BIN="$TARGET/cstore" "$TARGET/cstore-peers" --clients 64 --warmup-s 1 \
  --duration-s "$DURATION_S" --failover-trials "$FAILOVER_TRIALS" --entries "$ENTRIES" \
  --out "$WORK" | tee "$WORK/run.log"

# Replication and the browser, in the same run. Each tool prints markdown tables; only their
# table lines are kept. A stage that cannot run here says so in its place, never a figure.
FOLLOW_DOCS=1000000
BROWSER_DOCS=100000
[ "$DURATION_S" = 3 ] && FOLLOW_DOCS=200000 && BROWSER_DOCS=20000
# 10,000 sockets on each side: the client process needs the fds (capped at 20,000 here).
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# The tables, and cstore-fanout's lines on the server's CPU and RSS as list items.
tables() {
  sed -n -e '/^|/p' -e 's/^\(CPU while writing\|server RSS\|connect [0-9]\)/- \1/p' \
    -e '/^- \(checkpoints seen\|preloaded\)/p' -e '/^Verdict: /p'
}
stage() {  # stage NAME FILE COMMAND...: runs COMMAND, keeps its tables in FILE
  local name="$1" file="$2"
  shift 2
  say "$name"
  if "$@" > "$WORK/$file.log" 2>&1; then
    tables < "$WORK/$file.log" > "$WORK/$file.md"
  else
    echo "not available in this run: \`$*\` failed (last line: $(tail -1 "$WORK/$file.log"))" > "$WORK/$file.md"
  fi
}
export CSTORE_BIN="$TARGET/cstore"
stage "replication: latency at 10K writes/s to one replica" latency \
  "$TARGET/cstore-fanout" --spawn --replicas 1 --rate 10000 --in-flight 64 --duration-s "$DURATION_S"
stage "replication: fan-out to 1,000 replicas" fanout1k \
  "$TARGET/cstore-fanout" --spawn --replicas 1000 --rate 100 --processes 4 --duration-s "$DURATION_S"
stage "replication: fan-out to 10,000 replicas" fanout10k \
  "$TARGET/cstore-fanout" --spawn --replicas 10000 --rate 10 --processes 4 --duration-s "$DURATION_S"
CHECKPOINT_DOCS=1000000
CHECKPOINT_S=15
[ "$DURATION_S" = 3 ] && CHECKPOINT_DOCS=200000 && CHECKPOINT_S=5
stage "writes during checkpoints ($CHECKPOINT_DOCS docs)" checkpoints \
  "$ROOT/scripts/bench-checkpoints.sh" "$CHECKPOINT_S" "$CHECKPOINT_DOCS"
stage "replication: catch-up of a fresh native follower ($FOLLOW_DOCS docs)" catchup \
  "$TARGET/cstore-follow-bench" --docs "$FOLLOW_DOCS"
if [ -f "$ROOT/web/pkg-web/cstore_wasm_bg.wasm" ] && [ -d "$ROOT/web/node_modules/dexie" ]; then
  stage "browser: bootstrap vs Dexie and PouchDB ($BROWSER_DOCS docs)" browser \
    npm --prefix "$ROOT/web" run -s bench:bootstrap -- --docs "$BROWSER_DOCS" --runs 1 \
    --pouchdb-docs "$((BROWSER_DOCS / 5))"
else
  echo "not available in this run: build web/ first (web/scripts/build.sh, or scripts/run.sh)" \
    > "$WORK/browser.md"
fi
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

mkdir -p "$(dirname "$CHART")"
"$PY" scripts/bench-chart.py "$WORK/writes.csv" "$CHART"

disk() {
  local source fstype dev rota
  source="$(findmnt -no SOURCE -T "${TMPDIR:-/tmp}" 2>/dev/null || echo '?')"
  fstype="$(findmnt -no FSTYPE -T "${TMPDIR:-/tmp}" 2>/dev/null || echo '?')"
  dev="$(basename "$source")"
  rota="$(cat "/sys/block/$dev/queue/rotational" 2>/dev/null || echo '?')"
  case "$rota" in 0) rota="sysfs: not rotational" ;; 1) rota="sysfs: rotational" ;; *) rota="sysfs: unknown" ;; esac
  echo "$source ($fstype, $rota), the temp dir holding every data dir"
}

{
  echo "<!-- peers:begin (written by scripts/bench.sh peers; edits here are overwritten) -->"
  echo "## Against peers: durable single-document writes"
  echo
  echo "Written by \`scripts/bench.sh peers\` on $STARTED, $RUN_KIND. Chart: [$CHART]($CHART)."
  echo
  echo "![durable writes per second and p99 latency per system]($CHART)"
  echo
  cat "$WORK/writes.md"
  echo
  echo "Targets: cstore ≥ 5× etcd's ops/s, and on a single node ≥ 1.2× redis's and ≥ 3×"
  echo "PostgreSQL 15's, on the same machine in the same run; each cstore row is held against"
  echo "every peer its workload measured."
  echo
  cat "$WORK/writes-verdict.md"
  echo
  echo "Machine and run:"
  echo
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), \`nproc\` = $(nproc)"
  echo "- memory: $(free -g | awk '/^Mem:/ {print $2}') GiB; kernel $(uname -r)"
  echo "- disk: $(disk)"
  echo "- load average before / after the run: $LOAD_BEFORE / $LOAD_AFTER (other work shares these cores)"
  echo "- peers: $(etcd --version | head -1); $(redis-server --version | cut -d' ' -f1-3); $("$PG_BIN/postgres" --version)"
  echo "- commit: $(git -C "$ROOT" rev-parse --short HEAD)"
  echo
  echo "Method (\`target/release/cstore-peers --clients 64 --warmup-s 1 --duration-s $DURATION_S\`):"
  echo
  echo "- One load generator for every system (Rust, tokio): 64 closed-loop clients, each sends"
  echo "  a write, waits for its acknowledgement, sends the next; 1 s warm-up, then a"
  echo "  ${DURATION_S} s window; a write counts if it started in the window (a request unanswered"
  echo "  after 30 s is an error). Each client has a connection of its own, with one request in"
  echo "  flight, through a small client in the same binary: HTTP/1.1 keep-alive for cstore and"
  echo "  etcd, RESP for redis (no pipelining), tokio-postgres for PostgreSQL."
  echo "- The same ~100-byte JSON document per write everywhere: cstore \`POST /v1/c/bench\`"
  echo "  (\`ack=local\`: answered after the group-committed \`fdatasync\`); etcd \`POST /v3/kv/put\`"
  echo "  through its JSON gateway, key \`bench/<n>\` (answered after raft's WAL \`fdatasync\`);"
  echo "  redis \`SET bench:<n>\` with \`--appendonly yes --appendfsync always --save ''\`;"
  echo "  PostgreSQL 15 (Debian's \`postgresql-15\`) \`INSERT INTO bench (id, doc) VALUES (\$1,"
  echo "  \$2::jsonb)\` into \`bench (id text PRIMARY KEY, doc jsonb NOT NULL)\`, id \`bench:<n>\`,"
  echo "  prepared once on each of 64 connections of its own (tokio-postgres 0.7.18, one round"
  echo "  trip per write), answered after the commit's WAL flush (\`fsync=on\`,"
  echo "  \`synchronous_commit=on\`, read back from \`pg_settings\` before the run; the other"
  echo "  settings are initdb's defaults: \`wal_sync_method=fdatasync\`, \`commit_delay=0\`,"
  echo "  \`shared_buffers=128MB\`; \`max_connections=200\`)."
  echo "- Cross-check of the driver: right after it, \`redis-benchmark -c 64 -t set -d <same"
  echo "  size>\` runs against the same redis for about as many SETs. If it were far faster, our"
  echo "  RESP client, not redis, would bound the redis row. Likewise \`pgbench -M prepared -c 64"
  echo "  -j $(nproc) -T ${DURATION_S}\` runs a custom script of the same \`INSERT\` (a random"
  echo "  numeric id, the same document bytes as a variable cast to \`jsonb\`) against the same"
  echo "  server right after our driver; its p50/p99 come from its per-transaction log. And"
  echo "  \`wrk -t $(nproc) -c 64 -d ${DURATION_S}s --latency\` posts the same document to the same"
  echo "  cstore server right after our driver (no warm-up; p50/p99 from its latency"
  echo "  distribution). The cross-checks are shown, not judged: the verdicts use our driver's"
  echo "  rows."
  echo "- cstore's write channel (\`GET /v1/write\`, docs/HTTP_API.md): each client opens one"
  echo "  WebSocket and sends each write as an insert transaction (text message), answered in"
  echo "  order after the same group-committed \`fdatasync\`. \"single node\": one write in flight"
  echo "  per client, like every other row. \"single node, 16 in flight per client\": each of the"
  echo "  64 clients keeps 16 writes in flight on its channel (pipelining; the client the npm"
  echo "  package uses to drain its queue), against redis with the same pipelining through"
  echo "  \`redis-benchmark -c 64 -P 16 -n 2000000 -t set\` (redis's own C client, so the peer"
  echo "  gets the faster generator); its latency is redis-benchmark's per request."
  echo "- What bounds the cstore row, from a profile (per-request CPU in the HTTP layers, not the"
  echo "  log): [docs/bench/single-node-insert-profile.md](docs/bench/single-node-insert-profile.md)."
  echo "- Each system runs alone, one after the other, on a fresh temp data dir; etcd on"
  echo "  127.0.0.1:23790 (1 member) and 23791-23793 (3 members, \`--initial-cluster\` of all"
  echo "  three; writes go to the raft leader found through \`/v3/maintenance/status\`), redis on"
  echo "  127.0.0.1:26379, PostgreSQL on 127.0.0.1:25432 (a fresh \`initdb\` cluster, no unix"
  echo "  socket; run as the \`postgres\` user when the benchmark runs as root, since PostgreSQL"
  echo "  refuses root); cstore on a free port. All stopped by their PID (PostgreSQL with SIGINT,"
  echo "  a fast shutdown, SIGKILL after 30 s; the others with SIGKILL)."
  echo "- \"3 copies\": cstore leader + 2 native followers (\`cstore serve --follow"
  echo "  ws://leader/v1/replicate\`) with \`?ack=replicas:2\`; and a 3-member cstore Raft"
  echo "  cluster (\`cstore serve --node-id N --cluster 1=…,2=…,3=…\`, default timings) whose"
  echo "  leader, found through \`/v1/status\`, takes the writes: each is answered once a majority"
  echo "  of the members hold it durably (\`fdatasync\`) and the leader applied it; both against"
  echo "  3 etcd members. A row says \"not available\" with the server's own message when its mode"
  echo "  does not work on the benchmarked commit."
  echo "- Server and clients share the machine's $(nproc) cores: the figures include the"
  echo "  client's cost, the same for every system."
  echo
  echo "## Failover: write unavailability after kill -9 of the leader"
  echo
  cat "$WORK/failover.md"
  echo
  echo "Target: cstore p99 ≤ 1 s from the kill to the first acknowledged write."
  echo
  cat "$WORK/failover-verdict.md"
  echo
  echo "Method (\`cstore-peers --workloads failover --failover-trials $FAILOVER_TRIALS\`):"
  echo
  echo "- One fresh 3-member cluster per system, on loopback: cstore's Raft cluster on free"
  echo "  ports, etcd on 127.0.0.1:23794-23796; each with its default election timings (the"
  echo "  column above)."
  echo "- A trial: 8 closed-loop writers (the same ~100-byte writes as above), client i starting"
  echo "  on member i mod 3, any member taking writes (a cstore follower forwards to its leader,"
  echo "  an etcd follower's gateway proposes through raft to its leader). A failed request"
  echo "  (refused, reset, 503, 504, or no answer within a bound drawn per request between 100"
  echo "  and 200 ms) sends the client to the next member after 5 ms. After 1–1.2 s of steady"
  echo "  writes the current leader (cstore: \`/v1/status\` of every member; etcd:"
  echo "  \`/v3/maintenance/status\`) is killed with SIGKILL by its PID."
  echo "- Unavailability: from just before the kill to the first acknowledgement of a write whose"
  echo "  request was *sent* after it (a reply to an earlier request may have committed before the"
  echo "  kill). The request bound is how late a client stuck on a member that lost its leader"
  echo "  can notice (an etcd follower holds a write while its leader is gone; a cstore follower"
  echo "  answers 503 when it cannot reach its leader); it is the same for both systems, and"
  echo "  drawn per request so that the 8 clients do not retry in step."
  echo "- Then the load stops, the killed member starts again on its data dir, and the next trial"
  echo "  waits until the cluster is healthy (cstore: all members name one leader and applied the"
  echo "  same entry; etcd: all members healthy and naming one leader), plus 1 s."
  echo "- p50 / p99 are nearest-rank over the trials (with 20 trials the p99 is the worst one)."
  echo "  The long kill -9 test with linearizability checking is \`scripts/soak-cluster.sh --chaos\`."
  echo
  echo "## Reads on three members: local and linearizable"
  echo
  cat "$WORK/reads.md"
  echo
  echo "Method (\`cstore-peers --workloads reads --read-clients 16 --read-docs 1000 --duration-s $DURATION_S\`):"
  echo
  echo "- One fresh 3-member cluster per system (cstore's Raft cluster on free ports, etcd on"
  echo "  127.0.0.1:23797-23799), seeded with 1,000 documents of ~100 bytes (cstore: \`/v1/txn\`"
  echo "  batches into \`reads\`; etcd: puts of \`bench/<n>\`), then quiet: no writes while reading."
  echo "- Each row: 16 closed-loop readers on one member, 1 s warm-up, then a ${DURATION_S} s window;"
  echo "  a read counts only if it found its document. The follower is the member after the leader."
  echo "- cstore: \`GET /v1/c/reads/{id}\` (local: the member's own state) and with"
  echo "  \`?consistency=linearizable\` (ReadIndex: the leader confirms it still leads with a"
  echo "  majority and the member waits until it applied the leader's commit index; a follower asks"
  echo "  the leader). etcd: \`POST /v3/kv/range\` through the JSON gateway, linearizable by default"
  echo "  (raft ReadIndex) and with \`\"serializable\": true\` (the member's own state)."
  echo "- Readers and servers share the machine's $(nproc) cores, as above."
  echo
  echo "## Recovery after kill -9"
  echo
  cat "$WORK/recovery.md"
  echo
  echo "Target: ≥ 1M entries/s replayed (entries replayed ÷ time from spawn to the first"
  echo "\`/v1/health\` answer). A row with a snapshot measures mostly the snapshot load."
  echo
  echo "Method (\`cstore-peers --workloads recovery --entries $ENTRIES\`): a server starts on a"
  echo "fresh dir and is killed; its log is then written with the server's own \`FileStore\` and"
  echo "entry code (one insert of a ~70-byte document per entry, batches of 1,024, and the"
  echo "snapshots plus compactions the checkpoint setting would make); the server starts on it,"
  echo "takes 2,000 single-document writes over HTTP, is killed with SIGKILL, and is started"
  echo "again: the time runs from the spawn to \`/v1/health\` answering and to \`/v1/status\`"
  echo "showing the last LSN; the server's own \`state recovered … replayed=N ms=M\` line gives"
  echo "the entries replayed. With the default setting the log holds half an interval past its"
  echo "last snapshot (the average tail). The files are in the page cache (a process crash, not"
  echo "a machine crash). What bounds the replay, from a profile:"
  echo "[docs/bench/recovery-profile.md](docs/bench/recovery-profile.md)."
  echo
  echo "## Writes during checkpoints"
  echo
  echo "Target: write p99 during a checkpoint of 1M documents ≤ 2× the p99 without one."
  echo "(\`scripts/bench-checkpoints.sh $CHECKPOINT_S $CHECKPOINT_DOCS\`: two servers of their"
  echo "own, $CHECKPOINT_DOCS documents preloaded, then 64 closed-loop clients insert for"
  echo "$CHECKPOINT_S s, with checkpoints off and with one every 50,000 entries; the writes of the"
  echo "second run that overlapped a checkpoint, seen through the server's"
  echo "\`cstore_checkpoint_running\` gauge polled every 5 ms, are counted apart.)"
  echo
  # Blank lines before the list and the verdict, which the stage's filter took out.
  sed -e '/^- checkpoints seen/{x;p;x;}' -e '/^Verdict:/{x;p;x;}' "$WORK/checkpoints.md"
  echo
  echo "A checkpoint encodes its image in steps of 512 documents between commits, then hashes"
  echo "and writes it on a thread of its own (ARCHITECTURE.md, \"Checkpoints\"): writes are"
  echo "not stopped, but on $(nproc) cores they share the CPU with it."
  echo
  echo "## Replication and the browser, same run"
  echo
  echo "Propagation is from the writer sending an insert to each replica having verified the"
  echo "entry (\`cstore-fanout --spawn\`: server and replicas in separate processes). Targets:"
  echo "commit to replica p50 ≤ 0.2 ms and p99 ≤ 1 ms at 10K writes/s (measured here from the"
  echo "writer's send, so it includes the HTTP request and the fsync); 1,000 replicas at 100"
  echo "writes/s p99 ≤ 50 ms; 10,000 replicas at 10 writes/s p99 ≤ 100 ms (both with their"
  echo "replicas in 4 processes of their own, \`--processes 4\`, as issue 14 asks: not one runtime"
  echo "that also verifies every entry for all of them; each line after a table gives the server's"
  echo "CPU and RSS); a fresh follower ≥ 200K docs/s; a browser bootstrap ≥ 70% of a Dexie \`bulkPut\`."
  echo
  echo "Latency, one replica at 10K writes/s (\`--replicas 1 --rate 10000 --in-flight 64\`):"
  echo; cat "$WORK/latency.md"; echo
  echo "Fan-out, 1,000 replicas at 100 writes/s, in 4 replica processes:"
  echo; cat "$WORK/fanout1k.md"; echo
  echo "Fan-out, 10,000 replicas at 10 writes/s, in 4 replica processes:"
  echo; cat "$WORK/fanout10k.md"; echo
  echo "Catch-up of a fresh native follower (\`cstore-follow-bench --docs $FOLLOW_DOCS\`, 100 docs per entry):"
  echo; cat "$WORK/catchup.md"; echo
  echo "Browser bootstrap against Dexie and PouchDB in one headless Chromium run"
  echo "(\`npm --prefix web run bench:bootstrap -- --docs $BROWSER_DOCS --runs 1\`):"
  echo; cat "$WORK/browser.md"
  echo "<!-- peers:end -->"
} > "$WORK/section.md"

# Replace the peers block of BENCHMARKS.md, or append it; every other section stays.
if [ -f "$OUT" ] && grep -q '^<!-- peers:begin' "$OUT"; then
  awk -v section="$WORK/section.md" '
    /^<!-- peers:begin/ { while ((getline line < section) > 0) print line; skip = 1; next }
    /^<!-- peers:end -->/ { skip = 0; next }
    !skip { print }
  ' "$OUT" > "$WORK/out.md"
else
  { [ -f "$OUT" ] && cat "$OUT" && echo; cat "$WORK/section.md"; } > "$WORK/out.md"
fi
mv "$WORK/out.md" "$OUT"
say "wrote the peers sections of $OUT and $CHART"
