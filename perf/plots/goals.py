#!/usr/bin/env python3
"""Plots each issue goal's ratio, divided by its goal, in the lead's quiet
re-runs (perf/plots/goals.csv), so that 1.0 is "goal met" for every row.

    python3 perf/plots/goals.py perf/plots/goals.csv docs/goals.png

Needs matplotlib (pip install matplotlib).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# column -> (label, goal ratio)
GOALS = {
    "journal_64": ("journal: 64 committers vs fio fdatasync (goal 20x)", 20.0),
    "journal_large": ("journal: large records vs fio (goal 0.9x)", 0.9),
    "tree_insert": ("tree: random insert vs db_bench (goal 1.5x)", 1.5),
    "tree_read": ("tree: point read vs db_bench (goal 1.0x)", 1.0),
    "kv_set_p1": ("KV: durable SET P1 vs redis always (goal 1.5x)", 1.5),
    "kv_set_p16": ("KV: durable SET P16 vs redis always (goal 1.5x)", 1.5),
    "kv_get_p1": ("KV: GET P1 vs redis (goal 1.0x)", 1.0),
    "kv_get_p16": ("KV: GET P16 vs redis (goal 1.0x)", 1.0),
    "nfs_small_1": ("NFS: smallfile 1 client vs ganesha (goal 1.0x)", 1.0),
    "nfs_small_8": ("NFS: smallfile 8 clients vs ganesha (goal 1.0x)", 1.0),
    "nfs_large": ("NFS: largefile vs fio (goal 0.8x)", 0.8),
}


def read_rows(path):
    with open(path) as f:
        lines = [line for line in f if not line.startswith("#")]
    names = ["run", "machine"] + list(GOALS)
    return [dict(zip(names, row)) for row in csv.reader(lines) if row]


def main():
    rows = read_rows(sys.argv[1])
    runs = [f"{r['run']}\n(machine {r['machine']})" for r in rows]
    fig, ax = plt.subplots(figsize=(11, 6.5))
    markers = "osD^v<>pX*h"
    colors = plt.get_cmap("tab20").colors
    for i, (column, (label, goal)) in enumerate(GOALS.items()):
        values = [float(r[column]) / goal for r in rows]
        ax.plot(range(len(rows)), values, marker=markers[i % len(markers)], color=colors[(2 * i) % 20 + (i >= 10)], label=label)
    ax.axhline(1.0, color="black", linewidth=1.2, linestyle="--")
    ax.text(len(rows) - 1, 1.02, "goal", ha="right", va="bottom")
    ax.set_xticks(range(len(rows)), runs, fontsize=8)
    ax.set_ylabel("ratio / goal (1.0 = goal met)")
    ax.set_title("Keel's issue goals in the lead's quiet re-runs (median per-run ratio over its goal)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
