"""Planner throughput over the whole catalog matrix, printed as a table; optionally against another commit.

Every variant x accelerator (cpu + every GPU type) x quantization (auto + every format) x three
context/concurrency shapes, planned repeatedly. Successful plans and PlanErrors are timed
separately: a PlanError also searches for the nearest feasible alternatives, which re-runs the
planner, so its cost is a ratio worth watching.

``--against REF`` also measures the planner of git commit REF (checked out into a temporary
worktree) in the same run, alternating rounds between the two so machine noise hits both alike,
and prints the new/old ratios. Run: make bench (BENCH_AGAINST=REF to compare).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.benchmarks.sources import operator_sources

ROOT = Path(__file__).resolve().parents[3]
ROUNDS = 6


def _measure(package_dir: Path) -> dict[str, Any]:
    """One round in a fresh interpreter with ``package_dir`` first on the path."""
    env = {**os.environ, "PYTHONPATH": f"{package_dir}{os.pathsep}{ROOT}"}
    out = subprocess.run([sys.executable, "-m", "tests.benchmarks.planner.worker", "1"], cwd=ROOT, env=env,
                         check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def _summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    ok = [t for r in runs for t in r["ok"]]
    err = [t for r in runs for t in r["err"]]
    return {"specs": runs[0]["specs"], "fits": len(ok) / len(runs), "errors": len(err) / len(runs),
            "rate": statistics.median(r["rates"][0] for r in runs),
            "ok_ms": statistics.median(ok) * 1e3, "err_ms": statistics.median(err) * 1e3}


def _rows(name: str, s: dict[str, float]) -> list[tuple[str, str]]:
    return [
        (f"{name}: specs in the matrix", f"{s['specs']:.0f}"),
        (f"{name}: plans per round (fit / PlanError)", f"{s['fits']:.0f} / {s['errors']:.0f}"),
        (f"{name}: throughput, whole matrix (plans/s)", f"{s['rate']:,.0f}  (median of {ROUNDS} rounds)"),
        (f"{name}: fit, median per plan (ms)", f"{s['ok_ms']:.3f}"),
        (f"{name}: PlanError, median per plan (ms)", f"{s['err_ms']:.3f}"),
        (f"{name}: PlanError / fit cost ratio", f"{s['err_ms'] / s['ok_ms']:.1f}x"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="planner benchmark")
    parser.add_argument("--against", metavar="REF", help="also measure the planner of this git commit")
    args = parser.parse_args(argv)
    new_runs: list[dict[str, Any]] = []
    old_runs: list[dict[str, Any]] = []
    with operator_sources(args.against) as old:
        for _ in range(ROUNDS):
            new_runs.append(_measure(ROOT / "operator"))
            if old is not None:
                old_runs.append(_measure(old))
    new = _summary(new_runs)
    rows = _rows("this tree", new)
    if old_runs:
        old = _summary(old_runs)
        rows += _rows(args.against, old)
        rows += [("throughput new / old", f"{new['rate'] / old['rate']:.2f}x"),
                 ("fit time new / old", f"{new['ok_ms'] / old['ok_ms']:.2f}x"),
                 ("PlanError time new / old", f"{new['err_ms'] / old['err_ms']:.2f}x")]
    width = max(len(k) for k, _ in rows)
    print("planner benchmark")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


if __name__ == "__main__":
    main()
