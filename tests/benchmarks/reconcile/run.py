#!/usr/bin/env python3
"""Reconcile benchmark: `python -m tests.benchmarks.reconcile.run [--real-sizes 200,1000] [--against REF]`.

Two parts, each printing a table:

- the real API server (bench_apiserver.py): the e2e tier's kube-apiserver + kube-controller-manager
  (1.37), the operator as a subprocess, N Gemma4Deployments at once (default N = 200 and 1000): time to
  all children, the operator's requests per object counted from the apiserver's audit log, requests
  during the idle period, RSS. ``--against REF`` runs git commit REF's operator the same way in the same
  invocation (a temporary worktree), after this tree's, for a before/after table;
- kmock (bench_reconcile.py, default N = 50 and 200): watch mode against poll mode (a per-object timer
  re-reads the children every --resync seconds), so the cheaper way to notice drift can be read off.

``--trace-memory FILE`` runs this tree's operator under tracemalloc in the real-server part and appends
its memory breakdown (by owner, module and line) to FILE (traced_operator.py; slow, and its RSS is not a
measurement).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_apiserver import RealResult, real_table, run_real
from bench_reconcile import environment, run_all, table
from tests.benchmarks.sources import operator_sources
from tests.e2e.controlplane import binaries_available, selected_release


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s]


def real_part(args: argparse.Namespace) -> list[RealResult]:
    results: list[RealResult] = []
    with operator_sources(args.against) as old:
        for n in _sizes(args.real_sizes):
            runs: list[tuple[str, Path | None]] = [("this tree", None)] + ([(args.against, old)] if old else [])
            for source, tree in runs:
                trace = args.trace_memory if tree is None else None
                result = run_real(n, args.real_idle, source, tree, args.logs, trace)
                print(f"  real apiserver, {source}, N={n}: children {result.children_s:.1f}s, idle writes "
                      f"{result.idle.writes}, peak RSS {result.peak_rss_mib:.0f} MiB", file=sys.stderr, flush=True)
                results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--real-sizes", default="200,1000", help="object counts on the real API server (default 200,1000)")
    p.add_argument("--real-idle", type=float, default=120.0, help="idle seconds on the real API server (default 120)")
    p.add_argument("--against", metavar="REF", help="also run git commit REF's operator on the real API server")
    p.add_argument("--trace-memory", type=Path, metavar="FILE", help="tracemalloc breakdown of this tree's operator")
    p.add_argument("--sizes", default="50,200", help="object counts on kmock (default 50,200; empty: skip kmock)")
    p.add_argument("--modes", default="watch,poll", help="kmock: watch and/or poll (default both)")
    p.add_argument("--idle", type=float, default=120.0, help="kmock: idle seconds after settling (default 120)")
    p.add_argument("--resync", type=float, default=30.0, help="kmock: poll mode resync interval (default 30)")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument("--logs", type=Path, help="directory for the operator's logs")
    args = p.parse_args(argv)
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    print(f"reconcile benchmark ({environment()})", file=sys.stderr)
    real: list[RealResult] = []
    if _sizes(args.real_sizes) and not binaries_available():
        print("real API server part skipped: the control plane is not built (make tools)", file=sys.stderr)
    elif _sizes(args.real_sizes):
        real = real_part(args)
        print(f"real kube-apiserver + kube-controller-manager {selected_release()}, watch mode, "
              f"idle {args.real_idle:.0f}s:")
        print(real_table(real))
    kmock = asyncio.run(run_all(_sizes(args.sizes), [m for m in args.modes.split(",") if m], args.idle,
                                args.resync, args.logs)) if _sizes(args.sizes) else []
    if kmock:
        print(f"\nkmock (a Python fake API server in the benchmark's process), idle {args.idle:.0f}s:")
        print(table(kmock))
    if args.json:
        args.json.write_text(json.dumps({"real": [dataclasses.asdict(r) for r in real],
                                         "kmock": [dataclasses.asdict(r) for r in kmock]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
