"""The model download Job's entry point: make room, run ``hf download``, report in the termination log.

Run as ``python3 -c SOURCE --prune-root ROOT -- hf download REPO [FILE ...] [--revision REV] --local-dir DIR``:

1. Under ROOT, every directory that is neither DIR nor an ancestor of DIR is removed first: it holds an
   older checkpoint, and the cache volume is sized for one checkpoint, so keeping it would fill the disk.
2. The command after ``--`` runs with its output passed through unchanged (``kubectl logs`` shows the
   download as it goes); signals are forwarded, so a deleted Job stops the download cleanly.
3. At exit ONE JSON object goes to ``$GEMMA4_TERMINATION_LOG`` (default ``/dev/termination-log``), at most
   4096 bytes, the kubelet's limit for a termination message: ``exitCode``, ``bytes`` (what DIR holds,
   without hf's ``.cache`` bookkeeping), ``seconds`` and ``log`` (error lines first, then the tail).

It exits with the command's exit code, but fails a download that exited 0 without leaving every named FILE
under DIR: with more than one file, ``hf download`` falls back to an existing non-empty DIR when the Hub
refuses it, and says so only in a warning (huggingface_hub ``_snapshot_download.py``: "Returning existing
local_dir ... as remote repo cannot be accessed"). A Job restarted after a partial download has such a DIR.

The source runs in the download image with nothing but the standard library; it is read from this file
(``gemma4_operator.weights.download_script_source``), so what is tested is what is rendered.
"""

from __future__ import annotations

import collections
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from types import FrameType

MAX_BYTES = 4096  # the kubelet keeps at most 4096 bytes of a termination message
MAX_LINE = 400  # one line of the report, cut so that a long URL cannot push every other line out
ERROR_LINES = 12
TAIL_LINES = 30
# Pieces of the lines worth keeping when the download fails: hf's "Error: ..." line, an exception's last
# line ("...RepositoryNotFoundError: 404 Client Error."), the OS's ENOSPC text, huggingface_hub's
# disk-space warning (file_download.py _check_disk_space) and the not-found / access-denied wording of
# huggingface_hub cli/_errors.py.
ERROR_MARKERS = ("Error", "error", "No space left on device", "Not enough free disk space", "not found",
                 "Not Found", "denied")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # hf colours its messages even when its output is not a terminal
HF_CACHE = ".cache"  # hf download --local-dir keeps its metadata and partial files in DIR/.cache


def parse_args(argv: Sequence[str]) -> tuple[str, list[str]]:
    """``--prune-root ROOT -- COMMAND...`` as (ROOT, COMMAND)."""
    if len(argv) < 4 or argv[0] != "--prune-root" or argv[2] != "--":
        raise SystemExit("usage: python3 -c SOURCE --prune-root ROOT -- hf download REPO [FILE ...] --local-dir DIR")
    return argv[1], list(argv[3:])


def option(command: Sequence[str], name: str) -> str | None:
    """The value of ``name VALUE`` in ``command`` (the operator renders options as two words)."""
    for i, arg in enumerate(command[:-1]):
        if arg == name:
            return command[i + 1]
    return None


def named_files(command: Sequence[str]) -> list[str]:
    """The FILE arguments of ``hf download REPO [FILE ...] [--options]``: the words after REPO up to the
    first option (the argv shape the operator renders)."""
    if command[1:2] != ["download"]:
        return []
    files: list[str] = []
    for arg in command[3:]:
        if arg.startswith("-"):
            break
        files.append(arg)
    return files


def tree_bytes(path: str, skip: str | None = None) -> int:
    """The size of the files under ``path`` (symlinks not followed), leaving out its child ``skip``."""
    total = 0
    for root, dirs, files in os.walk(path):
        if skip is not None and root == path and skip in dirs:
            dirs.remove(skip)
        total += sum(os.lstat(os.path.join(root, name)).st_size for name in files)
    return total


def prune(root: str, keep: str) -> list[tuple[str, int]]:
    """Remove every directory under ``root`` that is neither ``keep`` nor one of its ancestors; return what
    was removed and its size. Files and symlinks are left alone."""
    root, keep = os.path.abspath(root), os.path.abspath(keep)
    if os.path.commonpath([root, keep]) != root or root == keep:
        raise ValueError(f"--local-dir {keep} is not inside --prune-root {root}")
    removed: list[tuple[str, int]] = []
    current = root
    while current != keep and os.path.isdir(current):
        step = os.path.join(current, os.path.relpath(keep, current).split(os.sep)[0])
        with os.scandir(current) as entries:
            doomed = sorted(e.path for e in entries if e.is_dir(follow_symlinks=False) and e.path != step)
        for path in doomed:
            size = tree_bytes(path)
            shutil.rmtree(path)
            removed.append((path, size))
        current = step
    return removed


def clean(line: str) -> str:
    text = ANSI.sub("", line).rstrip("\r\n")
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "…"


class Kept:
    """What the report keeps: when the download started, the last error lines and the last lines. A line
    that ends in a carriage return is a progress bar redrawn in place and is not kept."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.errors: collections.deque[str] = collections.deque(maxlen=ERROR_LINES)
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def add(self, raw: str) -> None:
        if raw.endswith("\r"):
            return
        line = clean(raw)
        if not line.strip():
            return
        # a traceback's frames are indented: their code names exceptions without being the error
        if not line[0].isspace() and any(marker in line for marker in ERROR_MARKERS):
            self.errors.append(line)
        self.tail.append(line)

    def consume(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.add(line)


def report(exit_code: int, size: int, seconds: float, errors: Sequence[str], tail: Sequence[str]) -> str:
    """The termination message: one JSON object of at most MAX_BYTES bytes. When the lines do not all fit,
    the oldest tail lines go first, then the oldest error lines."""
    errors = list(errors)
    tail = [line for line in tail if line not in errors]
    while True:
        text = json.dumps({"exitCode": exit_code, "bytes": size, "seconds": round(seconds, 3),
                           "log": "\n".join([*errors, *tail])}, ensure_ascii=False)
        if len(text.encode("utf-8")) <= MAX_BYTES:
            return text
        if tail:
            tail.pop(0)
        else:
            errors.pop(0)


def run(command: Sequence[str], kept: Kept) -> int:
    """Run ``command`` with its output passed through and kept; forward SIGTERM/SIGINT/SIGHUP to it."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def forward(number: int, _frame: FrameType | None) -> None:
        child.send_signal(number)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)

    def passed_through() -> Iterator[str]:
        assert child.stdout is not None
        # newline="": a progress bar's "\r" ends a line too, and reaches the log as it came
        for line in io.TextIOWrapper(child.stdout, encoding="utf-8", errors="replace", newline=""):
            sys.stdout.write(line)
            sys.stdout.flush()
            yield line

    kept.consume(passed_through())
    code = child.wait()
    return code if code >= 0 else 128 - code


def say(kept: Kept, line: str) -> None:
    print(f"[download] {line}", flush=True)
    kept.add(line + "\n")


def download(prune_root: str, command: Sequence[str], local_dir: str, kept: Kept) -> int:
    try:
        for path, size in prune(prune_root, local_dir):
            say(kept, f"removed {path} ({size / 2**30:.2f} GiB): an older checkpoint, replaced by {local_dir}")
        kept.started = time.monotonic()  # the download's time, not the removal's
        code = run(command, kept)
    except (ValueError, OSError) as error:  # FileNotFoundError: the command is missing from the image
        say(kept, f"error: {error}")
        return 127 if isinstance(error, FileNotFoundError) else 1
    missing = [name for name in named_files(command) if not os.path.isfile(os.path.join(local_dir, name))]
    if code == 0 and missing:
        say(kept, f"error: {command[0]} exited 0 but {', '.join(missing)} is missing under {local_dir}")
        return 1
    return code


def main(argv: Sequence[str]) -> int:
    prune_root, command = parse_args(argv)
    kept = Kept()
    local_dir = option(command, "--local-dir")
    if local_dir is None:
        say(kept, "error: the command has no --local-dir DIR, so there is nothing to keep under --prune-root")
        code = 2
    else:
        code = download(prune_root, command, local_dir, kept)
    seconds = time.monotonic() - kept.started
    size = tree_bytes(local_dir, skip=HF_CACHE) if local_dir and os.path.isdir(local_dir) else 0
    path = os.environ.get("GEMMA4_TERMINATION_LOG", "/dev/termination-log")
    with open(path, "w", encoding="utf-8") as log:
        log.write(report(code, size, seconds, kept.errors, kept.tail))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
