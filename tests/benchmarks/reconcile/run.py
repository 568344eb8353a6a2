#!/usr/bin/env python3
"""Reconcile benchmark: `python tests/benchmarks/reconcile/run.py [--sizes 50,200] [--idle 120]`.

Starts `gemma4-operator run` as a subprocess against an in-process kmock Emulator, creates N
Gemma4Deployments at once, and prints a table (see bench_reconcile.py for what is measured).
Modes: watch (default operator mode: kopf watches the owned kinds) and poll (a per-object kopf
timer re-reads the children every --resync seconds); both are measured by default so the
cheaper way to notice drift can be read off the table.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reconcile import environment, run_all, table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--sizes", default="50,200", help="comma-separated object counts (default 50,200)")
    p.add_argument("--modes", default="watch,poll", help="watch and/or poll (default both)")
    p.add_argument("--idle", type=float, default=120.0, help="idle seconds measured after settling (default 120)")
    p.add_argument("--resync", type=float, default=30.0, help="poll mode resync interval in seconds (default 30)")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument("--logs", type=Path, help="directory for the operator's logs")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    print(f"reconcile benchmark: sizes {sizes}, modes {modes}, idle {args.idle:.0f}s, poll resync "
          f"{args.resync:.0f}s ({environment()})", file=sys.stderr)
    results = asyncio.run(run_all(sizes, modes, args.idle, args.resync, args.logs))
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
