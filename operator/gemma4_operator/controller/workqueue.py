"""The reconciles of Gemma4Deployments as a work queue, in the manner of controller-runtime's: an event marks
its object dirty and returns; a fixed number of workers reconcile dirty objects, an object never twice at once,
and every mark made while it waits or runs merges into its one next reconcile.

Why not reconcile inside the kopf handler: kopf keeps an event's body, its cause and the handler's coroutines
until the handler returns. When N objects are created at once their children's events arrive faster than
reconciles finish, and handlers waiting for their object's turn held ~60 KiB each: at N=1000 the operator
peaked with ~5000 waiting tasks and 3.3 million Python memory blocks (tests/benchmarks/reconcile). A mark is
the object's key, the children an event may rewrite and a label.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Collection

logger = logging.getLogger(__name__)

Key = tuple[str, str]
# What a reconcile may write: None every child; else these (kind, name) and status (empty: status only).
Writable = frozenset[tuple[str, str]] | None


def writable(only: Collection[tuple[str, str]] | None) -> Writable:
    return None if only is None else frozenset(only)


@dataclasses.dataclass(frozen=True, slots=True)
class Mark:
    """Why an object is due: what its reconcile may write, the trigger it is counted under and how many
    times in a row it failed (its back-off)."""

    only: Writable
    trigger: str
    retry: int = 0

    def merged(self, later: Mark) -> Mark:
        """Both marks' writes; the trigger of a full mark over a partial one's (a resume that absorbed a child
        event is counted as a resume), else the first's."""
        if self.only is None or later.only is None:
            trigger = later.trigger if self.only is not None else self.trigger
            return Mark(None, trigger, max(self.retry, later.retry))
        return Mark(self.only | later.only, self.trigger, max(self.retry, later.retry))


Process = Callable[[Key, Mark], Awaitable[None]]


class WorkQueue:
    """Dirty objects and the workers that reconcile them (started on the first mark, in the running loop).

    A key is in the ready queue at most once while it has a mark and is not being processed; a mark made
    while it is processed puts it back when that one ends.
    """

    def __init__(self, workers: int, process: Process) -> None:
        self._workers = workers
        self._process = process
        self._marks: dict[Key, Mark] = {}
        self._busy: set[Key] = set()
        self._ready: asyncio.Queue[Key] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, key: Key, mark: Mark) -> None:
        before = self._marks.get(key)
        self._marks[key] = mark if before is None else before.merged(mark)
        if before is None and key not in self._busy:
            self._queue().put_nowait(key)

    def discard(self, key: Key) -> None:
        """The object is gone: drop its mark (a reconcile in progress ends by itself)."""
        self._marks.pop(key, None)

    def pending(self) -> dict[Key, Mark]:
        return dict(self._marks)

    def _queue(self) -> asyncio.Queue[Key]:
        if self._ready is None:
            self._ready = asyncio.Queue()
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._work(), name=f"reconcile worker {i}") for i in range(self._workers)]
        return self._ready

    async def _work(self) -> None:
        assert self._ready is not None
        while True:
            key = await self._ready.get()
            mark = self._marks.pop(key, None)
            if mark is None:  # discarded while it waited
                continue
            self._busy.add(key)
            try:
                await self._process(key, mark)
            except Exception:  # a bug in one reconcile must not stop the worker
                logger.exception("reconcile of %s/%s failed", *key)
            finally:
                self._busy.discard(key)
                if key in self._marks:
                    self._ready.put_nowait(key)

    async def stop(self) -> None:
        tasks, self._tasks, self._ready = self._tasks, [], None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
