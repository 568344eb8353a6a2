#!/usr/bin/env python3
"""Scrape benchmark: ``python -m tests.benchmarks.scrape.run [--pods 20] [--rounds 20] [--against REF]``.

The operator's memory while its built-in autoscaler scrapes N hostile pods that answer endless ``/metrics``
bodies, against the same N pods answering vLLM 0.32's real ``/metrics`` (56 KiB), side by side in one run.
The pods are aiohttp servers on 127.0.0.1 in a process of their own (pods.py); the scraper is the operator's
``controller.scraper.scrape`` in a process of its own (scraper_proc.py), whose RSS is the number.

``--against REF`` also runs git commit REF's scraper the same way (its ``operator/`` tree in a temporary worktree).
A scraper without bounds reads each hostile body to the end, so the pods stop after ``--hostile-mib`` per
answer (default 64 MiB; keep it small with ``--against``: an unbounded scraper holds 16 such bodies at once
and parses each whole, e.g. e9fbfa8 with 8 MiB answers: peak 236 MiB against 51, 38 s per round).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.benchmarks.sources import operator_sources

ROOT = Path(__file__).resolve().parents[3]


@dataclasses.dataclass(frozen=True)
class ScrapeResult:
    tree: str  # "this tree" or the --against ref
    pods: str  # good | hostile
    n: int
    rounds: int
    rss_start_mib: float
    rss_first_round_mib: float
    rss_end_mib: float
    peak_mib: float
    outcomes: dict[str, int]
    seconds: float

    @property
    def failed(self) -> int:
        return sum(v for k, v in self.outcomes.items() if k != "ok")


def run_one(mode: str, n: int, rounds: int, hostile_bytes: int, tree: str = "this tree",
            package_dir: Path | None = None) -> ScrapeResult:
    """N pods of one kind in one process, the scraper in another; the pods stop when their stdin closes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in (package_dir, ROOT) if p is not None)}
    with subprocess.Popen([sys.executable, "-m", "tests.benchmarks.scrape.pods", mode, str(n), str(hostile_bytes)],
                          cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as pods:
        try:
            assert pods.stdout is not None
            ports = pods.stdout.readline()
            out = subprocess.run([sys.executable, "-m", "tests.benchmarks.scrape.scraper_proc", ports, str(rounds)],
                                 cwd=ROOT, env=env, check=True, capture_output=True, text=True, timeout=600).stdout
        finally:
            assert pods.stdin is not None
            pods.stdin.close()
            pods.wait(timeout=30)
    return ScrapeResult(tree, mode, n, rounds, **json.loads(out))


def table(results: list[ScrapeResult]) -> str:
    good = {r.tree: r.peak_mib for r in results if r.pods == "good"}
    header = ("operator", "pods", "scrapes ok/failed", "RSS start", "after round 1", "at end", "peak",
              "peak / well-behaved", "s per round")
    rows = [header]
    for r in results:
        ratio = f"{r.peak_mib / good[r.tree]:.2f}x" if r.tree in good else "-"
        rows.append((r.tree, f"{r.n} {'hostile (endless body)' if r.pods == 'hostile' else 'well-behaved (vLLM)'}",
                     f"{r.n * r.rounds - r.failed}/{r.failed}", f"{r.rss_start_mib:.0f} MiB",
                     f"{r.rss_first_round_mib:.0f} MiB", f"{r.rss_end_mib:.0f} MiB", f"{r.peak_mib:.0f} MiB",
                     ratio, f"{r.seconds / r.rounds:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    reasons = sorted({f"{r.tree}, {r.pods}: {k}" for r in results for k in r.outcomes if k != "ok"})
    return "\n".join([*lines, *(f"  failure: {reason}" for reason in reasons)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--pods", type=int, default=20, help="pods of each kind (default 20)")
    p.add_argument("--rounds", type=int, default=20, help="scrapes of every pod, back to back (default 20)")
    p.add_argument("--hostile-mib", type=int, default=64, help="where a hostile answer stops (default 64 MiB)")
    p.add_argument("--against", metavar="REF", help="also run git commit REF's scraper")
    args = p.parse_args(argv)
    results = []
    with operator_sources(args.against) as old:
        runs: list[tuple[str, Path | None]] = [("this tree", None)] + ([(args.against, old)] if old else [])
        for tree, package_dir in runs:
            for mode in ("good", "hostile"):
                result = run_one(mode, args.pods, args.rounds, args.hostile_mib << 20, tree, package_dir)
                print(f"  {tree}, {args.pods} {mode} pods: peak RSS {result.peak_mib:.0f} MiB", file=sys.stderr,
                      flush=True)
                results.append(result)
    print(f"scrape benchmark: {args.rounds} rounds of {args.pods} pods each, the operator's scraper "
          f"(16 in flight, 5 s timeout); hostile answers stop at {args.hostile_mib} MiB unless the scraper stops first")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
