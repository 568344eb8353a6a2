"""Run the test tiers one pytest process each, and time them.

    python tests/tools/run_tiers.py [TIER ...] [-- PYTEST_ARGS ...]

Tiers (in this order by default): unit, integration, packaging, engine, tools, e2e, e2e-floor, benchmarks, then
any other directory under ``tests/`` with test files. A tier is a directory under ``tests/``, or one of
:data:`DERIVED` (``e2e-floor``: the e2e tests marked ``floor`` on Kubernetes 1.29, the oldest release the chart
supports). After each tier's own pytest summary line ("N passed in Ns") it prints ``tier NAME took N s``; at the
end a table of all tiers and one closing line, ``total: N passed, N failed, N skipped`` (errors count as failed).
Every tier runs even when an earlier one failed; the exit status is 1 when any tier failed.

A tier that runs nothing is a failure: a tier fails when it collected no test (pytest's exit 5), passed none, or
skipped a test it was not told to skip; the reasons pytest gave for each such skip are printed. The only way to
tell a tier to skip is not to run it: ``GEMMA4_SKIP_E2E=1`` leaves out the e2e tiers (said in the table), and
``TIERS=...`` picks tiers.

The tools the tiers use must already be in the tools cache (``make tools`` fetches them before this runs); a
tier that finds one missing still fetches it itself, with pytest's capture suspended where it takes minutes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TIERS = ("unit", "integration", "packaging", "engine", "tools", "e2e", "e2e-floor", "benchmarks")


@dataclass(frozen=True)
class DerivedTier:
    """A tier that runs another tier's directory with its own pytest arguments and environment."""

    directory: str
    pytest_args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


DERIVED = {
    # The floor check: CRD install, the bad-input corpus and a create/update/delete cycle on 1.29.
    "e2e-floor": DerivedTier("e2e", ("-m", "floor"), (("GEMMA4_K8S_RELEASE", "1.29"),)),
}
#: Tiers that need the real control plane; GEMMA4_SKIP_E2E=1 leaves them out.
E2E_TIERS = ("e2e", "e2e-floor")
_SKIP_LINE = re.compile(r"^SKIPPED \[(\d+)\] (.*)$")
_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)\b")
_SUMMARY = re.compile(r"^=*\s*(no tests ran|\d+ (passed|failed|errors?|skipped|xfailed|xpassed|deselected))")


def all_tiers() -> list[str]:
    """TIERS, then any other directory under tests/ holding test files (so that a new tier is never left out)."""
    found = sorted(
        d.name for d in (REPO / "tests").iterdir() if d.is_dir() and d.name not in TIERS and any(d.rglob("test_*.py"))
    )
    if os.environ.get("GEMMA4_SKIP_E2E") == "1":
        return [t for t in [*TIERS, *found] if t not in E2E_TIERS]
    return [*TIERS, *found]


@dataclass
class TierResult:
    name: str
    returncode: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    #: pytest's reasons for the tests it skipped ("file:line: reason"), one entry per reported line.
    skips: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.problem

    @property
    def problem(self) -> str:
        """Why a tier whose pytest run succeeded still failed: it ran nothing, or skipped what it was not told to."""
        if self.returncode == 0 and not self.counts.get("passed"):
            return "ran no test"
        if self.counts.get("skipped"):
            return f"skipped {self.counts['skipped']} test(s) it was not told to skip"
        return ""

    def describe(self) -> str:
        keys = ("passed", "failed", "errors", "skipped", "xfailed", "xpassed")
        parts = [f"{self.counts[k]} {k}" for k in keys if self.counts.get(k)]
        return ", ".join(parts) or "no tests ran"


def parse_counts(output: str) -> dict[str, int]:
    """Counts from pytest's closing summary line (the last line that looks like one)."""
    counts: dict[str, int] = {}
    for line in reversed(output.splitlines()):
        stripped = line.strip().strip("=").strip()
        if _SUMMARY.match(stripped):
            for number, key in _COUNT.findall(stripped):
                key = {"error": "errors", "warning": "warnings"}.get(key, key)
                counts[key] = int(number)
            break
    return counts


def skip_reasons(output: str) -> list[str]:
    """The "file:line: reason" of each line of pytest's short summary for skips (``-rs``), with its count."""
    reasons = []
    for line in output.splitlines():
        match = _SKIP_LINE.match(line.strip())
        if match:
            reasons.append(f"{match[2]} (x{match[1]})" if match[1] != "1" else match[2])
    return reasons


def tier_command(name: str, pytest_args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The pytest command line and the extra environment of tier ``name``."""
    derived = DERIVED.get(name)
    directory = derived.directory if derived else name
    extra = list(derived.pytest_args) if derived else []
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", f"tests/{directory}", *extra, *pytest_args]
    return cmd, dict(derived.env) if derived else {}


def run_tier(name: str, pytest_args: list[str]) -> TierResult:
    cmd, env = tier_command(name, pytest_args)
    if sys.stdout.isatty():
        cmd.append("--color=yes")
    settings = "".join(f"{k}={v} " for k, v in env.items())
    print(f"\n=== tier {name}: {settings}{' '.join(cmd[2:])}", flush=True)
    t0 = time.monotonic()
    # Output is passed through as it arrives (pytest's progress dots have no newline) and kept for the counts.
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **env})
    assert proc.stdout is not None
    chunks: list[bytes] = []
    out = sys.stdout.buffer
    while True:
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        out.write(chunk)
        out.flush()
        chunks.append(chunk)
    returncode = proc.wait()
    seconds = time.monotonic() - t0
    text = re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode(errors="replace"))
    result = TierResult(name, returncode, seconds, parse_counts(text), skip_reasons(text))
    status = "" if result.ok else f", FAILED ({result.problem or f'pytest exit {returncode}'})"
    print(f"tier {name} took {seconds:.0f} s ({result.describe()}{status})", flush=True)
    if result.skips:
        print(f"tier {name} was not told to skip these (a tier that runs nothing is a failure):", flush=True)
        for reason in result.skips:
            print(f"  SKIPPED {reason}", flush=True)
    return result


def main(argv: list[str]) -> int:
    if "--" in argv:
        split = argv.index("--")
        names, pytest_args = argv[:split], argv[split + 1 :]
    else:
        names, pytest_args = argv, []
    names = names or all_tiers()
    unknown = [n for n in names if n not in DERIVED and not (REPO / "tests" / n).is_dir()]
    if unknown:
        print(f"run_tiers: unknown tier(s) {unknown}; known: {', '.join(TIERS)}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    results = [run_tier(name, pytest_args) for name in names]
    total = time.monotonic() - t0
    left_out = [t for t in E2E_TIERS if t not in names] if os.environ.get("GEMMA4_SKIP_E2E") == "1" else []

    print("\n=== tier times")
    for r in results:
        print(f"  {r.name:12s} {r.seconds:6.0f} s  {'ok    ' if r.ok else 'FAILED'}  {r.describe()}")
    for name in left_out:
        print(f"  {name:12s} {'':>8s}  not run (GEMMA4_SKIP_E2E=1)")
    print(f"  {'all':12s} {total:6.0f} s")
    passed = sum(r.counts.get("passed", 0) for r in results)
    # A tier that failed without a failed test (a crash, a collection problem, no tests) still counts once.
    failed = sum(max(r.counts.get("failed", 0) + r.counts.get("errors", 0), 0 if r.ok else 1) for r in results)
    skipped = sum(r.counts.get("skipped", 0) for r in results)
    bad = [r.name for r in results if not r.ok]
    if bad:
        print("failed tiers: " + ", ".join(f"{r.name} ({r.problem or 'tests failed'})" for r in results if not r.ok))
    # Closing line in the plain form CI reads: "N passed, N failed, N skipped".
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
