"""Smoke test of the reconcile benchmark: a few objects, a short idle period, both modes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reconcile import run_one, table

from gemma4_operator.controller.handlers import ADMISSION_RECHECKS


async def test_watch_mode_small_run_is_write_free_when_idle() -> None:
    result = await run_one("watch", 4, idle=1.0, resync=0.0)
    assert result.children_s < 30
    # everything comes from watches, except one look-up (GET) of each child before its first apply, which tells
    # an object of someone else's with that name (NameConflict): no more of those than applies; and lists of the
    # download Job's Events while the Job has no pod (an admission refusal is only an Event there): one per
    # reconcile of that object meanwhile and its timed re-checks, however the watch events fall
    child_reads = result.reads - result.event_reads
    assert 0 < child_reads <= result.applies
    assert 1 <= result.event_reads <= 1 + len(ADMISSION_RECHECKS)
    # one status write per object, and one more for the object with a model cache: Downloading, then the
    # Deployment once its download Job succeeded
    assert result.applies >= 8 and result.status_patches == 5
    assert result.idle_writes == 0 and result.idle_reads == 0
    assert result.exit_code == 0
    assert "watch" in table([result])


async def test_poll_mode_reads_on_its_timer_without_writing() -> None:
    result = await run_one("poll", 2, idle=1.5, resync=0.5)
    assert result.idle_writes == 0 and result.idle_reads > 0
    assert result.exit_code == 0
