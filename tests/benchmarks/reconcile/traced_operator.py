"""`gemma4-operator` under tracemalloc, for the reconcile benchmark's memory breakdown.

    python -m tests.benchmarks.reconcile.traced_operator OUT.txt run --server ... (the CLI's args)

Runs the CLI in this process with tracemalloc on (25 frames) from after the imports. A report is appended
to OUT.txt on each SIGUSR1 and whenever the traced memory grew by 25% since the last one (so the last of
those shows the peak's make-up): traced memory now and at its peak, then the live allocations grouped
three ways:

- by owner: the innermost frame in the operator (``gemma4_operator/...``), kopf or the kubernetes client
  (else the innermost frame of all): which of their lines made the memory still held;
- by module (the file of the allocating line);
- by line (the top lines).

tracemalloc roughly doubles the process's memory and slows it: the RSS of a traced run is not a
measurement, only the breakdown is.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType

FRAMES = 25
PEAK_STEP = 1.25  # a new peak report when the traced memory grew by 25% since the last one
TOP = 25
OWNERS = ("/gemma4_operator/", "/kopf/", "/kubernetes/")


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/operator/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def owner(trace: tracemalloc.Trace) -> str:
    """The innermost frame of the operator, kopf or the kubernetes client (else the innermost frame)."""
    frames = list(reversed(trace.traceback))  # tracemalloc keeps the oldest first
    frame = next((f for f in frames if any(marker in f.filename for marker in OWNERS)), frames[0] if frames else None)
    return f"{_short(frame.filename)}:{frame.lineno}" if frame else "?"


def _section(title: str, sizes: Counter[str], counts: Counter[str]) -> list[str]:
    lines = [f"-- {title}"]
    for key, size in sizes.most_common(TOP):
        lines.append(f"{size / 2**20:9.2f} MiB {counts[key]:9d} blocks  {key}")
    return lines


def report(snapshot: tracemalloc.Snapshot) -> str:
    current, peak = tracemalloc.get_traced_memory()
    by_owner: Counter[str] = Counter()
    owner_blocks: Counter[str] = Counter()
    for trace in snapshot.traces:
        key = owner(trace)
        by_owner[key] += trace.size
        owner_blocks[key] += 1
    out = [f"== traced now {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB"]
    out += _section("by owner (innermost gemma4_operator / kopf / kubernetes frame)", by_owner, owner_blocks)
    for group in ("filename", "lineno"):
        sizes: Counter[str] = Counter()
        counts: Counter[str] = Counter()
        for stat in snapshot.statistics(group)[:TOP]:
            frame = stat.traceback[0]
            key = _short(frame.filename) + (f":{frame.lineno}" if group == "lineno" else "")
            sizes[key] += stat.size
            counts[key] += stat.count
        out += _section(f"by {group}", sizes, counts)
    return "\n".join(out) + "\n"


def _write(out: Path, title: str) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    with out.open("a") as f:
        f.write(f"\n#### {title}\n{report(snapshot)}")


def _watch_peaks(out: Path) -> None:
    """Report again whenever the traced memory grew by PEAK_STEP since the last peak report: the last
    such report shows what the memory was made of near its peak."""
    reported = 0
    while True:
        time.sleep(1.0)
        current, _ = tracemalloc.get_traced_memory()
        if current > reported * PEAK_STEP and current > 2**20:
            reported = current
            _write(out, f"new peak ({time.strftime('%H:%M:%S')})")


def main(argv: list[str]) -> int:
    out = Path(argv[0])

    def dump(_signum: int, _frame: FrameType | None) -> None:
        _write(out, f"on SIGUSR1 ({time.strftime('%H:%M:%S')})")

    # Imported before tracing starts (module code and import-time data are the baseline, not traced):
    # tracing the imports would take minutes.
    import kopf  # noqa: F401
    import kubernetes  # noqa: F401

    from gemma4_operator.cli.main import main as cli
    from gemma4_operator.controller import handlers, runner  # noqa: F401

    signal.signal(signal.SIGUSR1, dump)
    tracemalloc.start(FRAMES)
    threading.Thread(target=_watch_peaks, args=(out,), daemon=True, name="tracemalloc peaks").start()
    return cli(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
