#!/usr/bin/env python3
"""Draws the peer comparison chart: ops/s per system (left), p99 latency (right).

Usage: bench-chart.py WRITES_CSV OUT_PNG
The CSV is cstore-peers' writes.csv (workload,system,ops_per_s,p50_ms,p99_ms); rows that
were not available are absent from it, so the chart never shows a made-up bar.
"""
import csv
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"cstore": "#2b6cb0", "etcd": "#718096", "redis": "#c53030", "PostgreSQL": "#2f855a"}
CROSS_CHECK_COLOR = "#f6ad55"  # redis-benchmark, pgbench, wrk: other generators, drawn apart


def label(row: dict) -> str:
    name, _, via = row["system"].split(" (")[0].partition(" via ")
    via = textwrap.wrap(f"via {via}", 12) if via else []
    lines = textwrap.wrap(name, 12) + via + [row["workload"]]
    return "\n".join(lines)


def color(system: str) -> str:
    if " via " in system:
        return CROSS_CHECK_COLOR
    return COLORS.get(system.split()[0], "#999999")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        sys.exit("bench-chart: no measured rows")
    labels = [label(r) for r in rows]
    colors = [color(r["system"]) for r in rows]
    ops = [float(r["ops_per_s"]) for r in rows]
    p99 = [float(r["p99_ms"]) for r in rows]
    # Wide enough for every bar's label (10 rows with the wrk, redis-benchmark and pgbench cross-checks).
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(12.5, 1.6 * len(rows)), 4.8))
    for axis, values, title, fmt in (
        (left, ops, "durable writes/s, 64 clients (higher is better)", "{:,.0f}"),
        (right, p99, "p99 latency, ms (lower is better)", "{:.1f}"),
    ):
        bars = axis.bar(range(len(values)), values, color=colors)
        axis.set_xticks(range(len(values)), labels, fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.spines[["top", "right"]].set_visible(False)
        for bar, value in zip(bars, values):
            axis.annotate(fmt.format(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=90)


if __name__ == "__main__":
    main()
