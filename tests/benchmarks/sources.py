"""Another commit's operator sources, for the benchmarks' ``--against REF`` (side by side in one run)."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def operator_sources(ref: str | None) -> Iterator[Path | None]:
    """REF's ``operator/`` directory in a temporary git worktree, removed afterwards (None: no REF)."""
    if not ref:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bench-against-") as tmp:
        tree = Path(tmp) / "old"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), ref], cwd=ROOT, check=True)
        try:
            yield tree / "operator"
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
