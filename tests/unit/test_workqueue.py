"""The reconcile work queue: marks merge, an object is never reconciled twice at once, a mark made while it
runs brings exactly one more reconcile, a gone object's mark is dropped, and a failing reconcile does not
stop its worker."""

from __future__ import annotations

import asyncio

import pytest

from gemma4_operator.controller.workqueue import Key, Mark, WorkQueue, writable

A, B = ("ml", "a"), ("ml", "b")
SVC, DEP = ("Service", "a"), ("Deployment", "a")


@pytest.mark.parametrize(("first", "later", "merged"), [
    (Mark(None, "create"), Mark(frozenset({SVC}), "child"), Mark(None, "create")),
    (Mark(frozenset({SVC}), "child"), Mark(None, "resume", 2), Mark(None, "resume", 2)),
    (Mark(None, "create"), Mark(None, "facts"), Mark(None, "create")),
    (Mark(frozenset({SVC}), "child", 1), Mark(frozenset({DEP}), "child"), Mark(frozenset({SVC, DEP}), "child", 1)),
    (Mark(frozenset(), "pod"), Mark(frozenset({DEP}), "child"), Mark(frozenset({DEP}), "pod")),
    (Mark(frozenset(), "pod"), Mark(frozenset(), "pod"), Mark(frozenset(), "pod")),
], ids=["all-absorbs-one", "one-then-all", "two-full", "children-union", "status-only-widens", "status-only"])
def test_marks_merge_to_what_both_may_write(first: Mark, later: Mark, merged: Mark) -> None:
    assert first.merged(later) == merged


def test_writable_keeps_none_and_the_empty_set_apart() -> None:
    assert writable(None) is None
    assert writable([]) == frozenset()
    assert writable([SVC, SVC]) == frozenset({SVC})


class _Recorder:
    """A process that records what it was given and how many ran at once, and waits for a release."""

    def __init__(self) -> None:
        self.calls: list[tuple[Key, Mark]] = []
        self.running: dict[Key, int] = {}
        self.most_at_once = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, key: Key, mark: Mark) -> None:
        self.running[key] = self.running.get(key, 0) + 1
        self.most_at_once = max(self.most_at_once, self.running[key])
        self.calls.append((key, mark))
        try:
            await self.release.wait()
        finally:
            self.running[key] -= 1


async def _drain(queue: WorkQueue) -> None:
    """Until no mark is left and the workers went idle (fails after 5 s: a stopped worker leaves marks)."""
    async def idle() -> None:
        for _ in range(50):
            await asyncio.sleep(0)
        while queue.pending():
            await asyncio.sleep(0.01)
        for _ in range(50):
            await asyncio.sleep(0)

    await asyncio.wait_for(idle(), 5)


async def test_marks_before_the_worker_runs_become_one_reconcile() -> None:
    rec = _Recorder()
    queue = WorkQueue(4, rec)
    queue.add(A, Mark(frozenset({SVC}), "child"))
    queue.add(A, Mark(frozenset(), "pod"))
    queue.add(A, Mark(frozenset({DEP}), "child"))
    queue.add(B, Mark(None, "create"))
    await _drain(queue)
    await queue.stop()
    assert sorted(rec.calls) == [(A, Mark(frozenset({SVC, DEP}), "child")), (B, Mark(None, "create"))]


async def test_a_mark_while_running_brings_one_more_reconcile_never_a_concurrent_one() -> None:
    rec = _Recorder()
    rec.release.clear()
    queue = WorkQueue(4, rec)
    queue.add(A, Mark(frozenset({SVC}), "child"))
    await asyncio.sleep(0.01)
    assert rec.running == {A: 1}
    for _ in range(5):  # four idle workers, yet A waits for its running reconcile
        queue.add(A, Mark(frozenset(), "pod"))
        await asyncio.sleep(0)
    assert rec.running == {A: 1} and len(rec.calls) == 1
    rec.release.set()
    await _drain(queue)
    await queue.stop()
    assert rec.most_at_once == 1
    assert rec.calls == [(A, Mark(frozenset({SVC}), "child")), (A, Mark(frozenset(), "pod"))]


async def test_a_discarded_mark_is_not_reconciled() -> None:
    rec = _Recorder()
    rec.release.clear()
    queue = WorkQueue(1, rec)
    queue.add(B, Mark(None, "create"))  # keeps the only worker busy
    await asyncio.sleep(0.01)
    queue.add(A, Mark(None, "create"))
    queue.discard(A)
    queue.add(A, Mark(None, "resume"))  # A is in the ready queue twice now; it runs once
    rec.release.set()
    await _drain(queue)
    await queue.stop()
    assert rec.calls == [(B, Mark(None, "create")), (A, Mark(None, "resume"))]


async def test_a_failing_reconcile_does_not_stop_its_worker(caplog: pytest.LogCaptureFixture) -> None:
    done: list[Key] = []

    async def process(key: Key, mark: Mark) -> None:  # noqa: ARG001
        if key == A:
            raise RuntimeError("a bug")
        done.append(key)

    queue = WorkQueue(1, process)
    queue.add(A, Mark(None, "create"))
    queue.add(B, Mark(None, "create"))
    await _drain(queue)
    await queue.stop()
    assert done == [B]
    assert "reconcile of ml/a failed" in caplog.text and "a bug" in caplog.text
