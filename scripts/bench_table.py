#!/usr/bin/env python3
"""Prints the latest criterion results as Markdown tables: the median of each benchmark and its
ratio to the peer measured in the same group and run (a benchmark whose id contains `peer`,
default `governor`).

    cargo bench --bench memory_store && scripts/bench_table.py [peer]
"""
import json
import pathlib
import sys

peer = sys.argv[1] if len(sys.argv) > 1 else "governor"
root = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
for group in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "report"):
    rows = []
    for estimates in sorted(group.glob("**/new/estimates.json")):
        bench = json.loads((estimates.parent / "benchmark.json").read_text())
        median = json.loads(estimates.read_text())["median"]["point_estimate"]
        name = bench.get("function_id") or ""
        if bench.get("value_str"):
            name = f"{name}/{bench['value_str']}"
        rows.append((name, median))
    if not rows:
        continue
    title = json.loads(next(group.glob("**/new/benchmark.json")).read_text())["group_id"]
    print(f"\n{title}\n")
    print("| check | median | ratio to " + peer + " |")
    print("|---|---|---|")
    peers = {n.split("/", 1)[1] if "/" in n else "": m for n, m in rows if n.startswith(peer)}
    for name, median in rows:
        variant = name.rsplit("/", 1)[1] if "/" in name and name.count("/") >= 2 else ""
        base = peers.get(variant, peers.get(""))
        ratio = "1.00" if name.startswith(peer) else (f"{median / base:.2f}" if base else "")
        print(f"| {name} | {median:.1f} ns | {ratio} |")
