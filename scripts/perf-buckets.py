#!/usr/bin/env python3
"""Splits a `perf record --call-graph dwarf` profile of `cstore serve` into buckets of work.

Usage: perf script -i perf.data -F comm,tid,ip,sym --inline > script.txt
       scripts/perf-buckets.py script.txt

Each sample goes to exactly one bucket: walking its stack from the leaf toward the root, the
first frame that matches a bucket's patterns decides (so the most specific work wins, and a
malloc called from the JSON parser counts as JSON parsing). The second column is the part of
the bucket whose leaf frame is in the allocator (malloc, free and their helpers). Prints a
markdown table, largest bucket first.
"""
import collections
import re
import sys

BUCKETS = [
    ("fdatasync (commit thread, kernel)", ["fdatasync"]),
    ("WAL append: framing + write(2) (commit thread)",
     ["FileStore::write_run", "FileStore::append_blocking"]),
    ("log entry: encode + SHA-256 chain hash", ["compute_hash", "LogEntry::new", "Op::hash"]),
    ("state apply (core)", ["State::apply"]),
    ("hyper: a new read buffer per request (`BytesMut::reserve_inner`)",
     ["BytesMut::reserve_inner"]),
    ("socket `writev` of the response (libc + kernel TCP)", ["__GI___writev"]),
    ("socket `recv` (libc + kernel TCP)", ["__libc_recv"]),
    ("`epoll_wait`", ["epoll_wait"]),
    ("JSON body → `serde_json::Value` → `RawDoc`, and dropping the `Value`",
     ["JsonBody", "RawDoc::from_value", "drop_in_place<serde_json::value::Value>",
      "drop_in_place<alloc::collections::btree::map::IntoIter<alloc::string::String,"
      "serde_json::value::Value>>"]),
    ("CORS layer (`tower_http::cors`, its `Vary` header)",
     ["tower_http::cors::vary", "tower_http::cors::Cors"]),
    ("metrics: `record_http_request`", ["record_http_request"]),
    ("edge clock: `ConnClock` updates and expiry watch (mutex, `now()`, `Notify`, timer)",
     ["ConnClock", "TrackedIo"]),
    ("hyper: request head parse, response head encode",
     ["Http1Transaction>::parse", "Http1Transaction>::encode"]),
    ("`AppState` clone and drop per request",
     ["AppState as core::clone::Clone", "drop_in_place<cstore_server::http::AppState>",
      "drop_in_place<cstore_server::node::Node>"]),
    ("handler: `Node::write` (to the commit thread and back)", ["Node::write"]),
    ("rest of the connection task: hyper dispatch, axum routers, tower layers, futures",
     ["edge::listener::serve"]),
    ("commit thread: the rest", ["leader::commit"]),
    ("tokio scheduler, parking", ["tokio::runtime"]),
]
ALLOCATOR = re.compile(
    r"^(_int_malloc|malloc|cfree@\S+|_int_free|malloc_consolidate|unlink_chunk\S*|__libc_calloc"
    r"|_int_realloc|__GI___libc_realloc|sysmalloc|__libc_malloc|__GI___libc_malloc"
    r"|__GI___libc_free|tcache_get|tcache_put)$"
)


def samples(path):
    """Yields (comm, frames leaf first) per sample of `perf script` output."""
    comm, frames = None, []
    with open(path, errors="replace") as text:
        for line in text:
            if not line.strip():
                continue
            if line[0] not in "\t ":
                if comm is not None:
                    yield comm, frames
                comm, frames = line.split()[0], []
            else:
                parts = line.strip().split(None, 1)
                if len(parts) == 2:
                    frames.append(parts[1].replace(" (inlined)", ""))
    if comm is not None:
        yield comm, frames


def bucket(comm, frames):
    for frame in frames:
        for name, patterns in BUCKETS:
            if any(p in frame for p in patterns):
                return name
    return f"other ({comm})"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    counts, in_allocator, total = collections.Counter(), collections.Counter(), 0
    for comm, frames in samples(sys.argv[1]):
        total += 1
        name = bucket(comm, frames)
        counts[name] += 1
        if frames and ALLOCATOR.match(frames[0]):
            in_allocator[name] += 1
    if total == 0:
        sys.exit("perf-buckets: no samples")
    print(f"{total} samples\n")
    print("| bucket | share of the server's samples | of which in malloc/free |")
    print("|---|---:|---:|")
    for name, n in counts.most_common():
        print(f"| {name} | {100 * n / total:.1f}% | {100 * in_allocator[name] / total:.1f}% |")


if __name__ == "__main__":
    main()
