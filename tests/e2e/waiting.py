"""Polling helper shared by the e2e modules."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2,
             detail: Callable[[], str] | None = None) -> T:
    """Poll ``probe`` until it returns something truthy; on timeout fail, adding ``detail()`` if given."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}{detail() if detail else ''}")
        time.sleep(interval)
