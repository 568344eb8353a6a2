"""Run an engine and, when it fails, write the lines that explain why to the termination log.

The kubelet's ``FallbackToLogsOnError`` keeps only the last 2048 bytes (80 lines) of the log, and
vLLM ends a failed start-up with the API server's own traceback ("Engine core initialization
failed. See root cause above"), so the root cause is usually cut off. This wrapper passes the
engine's output through unchanged, remembers the lines that hold one of the engine's error
signature texts (``GEMMA4_ERROR_LITERALS``, one per line) and, on a non-zero exit, writes them to
``/dev/termination-log``, which the kubelet prefers to the log tail. Signals are forwarded, so
graceful shutdown is the engine's own.

The source runs in the engine image with nothing but the standard library (``python3 -c``); it is
read from this file, so what is tested is what is rendered.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from types import FrameType

MAX_BYTES = 4000  # the kubelet truncates termination messages at 4096 bytes


def kept_lines(lines: Iterable[str], literals: Sequence[str], keep: int = 12) -> list[str]:
    """The last ``keep`` lines holding one of ``literals``, oldest first."""
    found: collections.deque[str] = collections.deque(maxlen=keep)
    for line in lines:
        if any(piece in line for piece in literals):
            found.append(line.rstrip("\n"))
    return list(found)


def main(argv: Sequence[str]) -> int:
    literals = [piece for piece in os.environ.get("GEMMA4_ERROR_LITERALS", "").split("\n") if piece]
    path = os.environ.get("GEMMA4_TERMINATION_LOG", "/dev/termination-log")
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")

    def forward(number: int, _frame: FrameType | None) -> None:
        child.send_signal(number)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)

    def passed_through() -> Iterator[str]:
        assert child.stdout is not None
        for line in child.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            yield line

    found = kept_lines(passed_through(), literals)
    code = child.wait()
    if code != 0 and found:
        with open(path, "w", encoding="utf-8") as log:
            log.write("\n".join(found)[-MAX_BYTES:])
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
