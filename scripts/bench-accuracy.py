#!/usr/bin/env python3
"""Scores a carelens binary's releases against plain DataFusion's answers, as the benchmark
scores its own (benches/engine.rs, "Accuracy"): to compare builds, e.g. before and after a
change to the noise or the bounding.

usage: scripts/bench-accuracy.py CARELENS TRUTH.json CONFIG [RUNS]

CARELENS  a carelens binary (e.g. target/release/carelens, or an older build)
TRUTH     written by `CARELENS_BENCH_TRUTH=TRUTH.json cargo bench --bench engine`
CONFIG    the extract's carelens.toml (the benchmark's, e.g. target/bench-data/1m)
RUNS      releases per query, each against a fresh ledger (default 5)

Every query of TRUTH is released RUNS times with `carelens query --format json` as user
`analyst`; each released count, sum, mean and derived cell is compared with the true cell
of the row with the same keys. Prints the benchmark's accuracy table.
"""
import json
import math
import os
import subprocess
import sys
import tempfile


def score(release, truth, acc):
    keys = [c["name"] for c in release["columns"] if c["role"] == "key"]
    scored = [c["name"] for c in release["columns"] if c["role"] not in ("key", "public")]
    index = {}
    for row in truth:
        if all(k in row for k in keys):
            index[tuple(row[k]["text"] for k in keys)] = row
    for row in truth:
        acc["true"] += sum(1 for c in scored if (row.get(c) or {}).get("value") not in (None, 0.0))
    for row, cells in zip(release["rows"], release["cells"]):
        key = tuple(key_text(row.get(k)) for k in keys)
        true_row = index.get(key)
        if true_row is None:
            continue
        for c in scored:
            t = (true_row.get(c) or {}).get("value")
            v = row.get(c)
            shown = (cells.get(c) or {}).get("status") == "released"
            if t is not None and t != 0.0 and isinstance(v, (int, float)) and shown:
                acc["released"] += 1
                acc["errors"].append(abs(v - t) / abs(t))


def key_text(value):
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def quantile(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[int(math.floor((len(xs) - 1) * q + 0.5))]


def percent(x):
    if x is None:
        return "-"
    return f"{x * 100:.2f}%" if x < 0.1 else f"{x * 100:.1f}%"


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    binary, truth_path, config = sys.argv[1:4]
    runs = int(sys.argv[4]) if len(sys.argv) == 5 else 5
    answers = json.load(open(truth_path))
    print("| query | released cells | relative error, median | 90th percentile | largest | cells of the true answer released |")
    print("|---|---:|---:|---:|---:|---:|")
    for query, answer in answers.items():
        acc = {"true": 0, "released": 0, "errors": []}
        failure = None
        with tempfile.TemporaryDirectory() as d:
            sql = os.path.join(d, "query.sql")
            with open(sql, "w") as f:
                f.write(answer["sql"])
            for run in range(runs):
                p = subprocess.run(
                    [binary, "query", sql, "--config", config, "--user", "analyst",
                     "--ledger", os.path.join(d, f"ledger{run}.db"), "--format", "json"],
                    capture_output=True, text=True)
                if p.returncode != 0:
                    failure = p.stderr.strip().splitlines()[0] if p.stderr.strip() else "failed"
                    break
                score(json.loads(p.stdout), answer["rows"], acc)
        if failure:
            print(f"| {query} | {failure} | | | | |")
            continue
        share = acc["released"] / acc["true"] if acc["true"] else None
        e = acc["errors"]
        print(f"| {query} | {acc['released']} | {percent(quantile(e, 0.5))} | "
              f"{percent(quantile(e, 0.9))} | {percent(quantile(e, 1.0))} | {percent(share)} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
