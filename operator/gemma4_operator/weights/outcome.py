"""What the download Job's termination message (written by ``download_script.py``) means for the model's
status: a reason and words a user can act on.

The texts matched are huggingface_hub 2.4's own, as ``hf download`` prints them:

* ``cli/_errors.py`` (the CLI's one-line errors): ``Access denied. Model 'REPO' requires approval.``
  (GatedRepoError), ``Model 'REPO' not found.`` (RepositoryNotFoundError, for a 401 as for a 404),
  ``Revision not found in model 'REPO'.`` (RevisionNotFoundError).
* ``utils/_http.py`` ``hf_raise_for_status`` (the exception texts, printed in full with ``HF_DEBUG=1``, and
  in the warning with which a snapshot download falls back to an existing folder): ``401 Client Error.``,
  ``Cannot access gated repo for url``, ``Repository Not Found for url``, ``Revision Not Found for url``,
  ``403 Forbidden:``. The Hub answers 401 for a gated or private repository without a token and for
  a missing one alike (the comment there), so a 401 is worded as "gated or private (or does not exist)".
* ``file_download.py`` ``_check_disk_space``: ``Not enough free disk space to download the file.``;
  the OS's ENOSPC text ``No space left on device`` ([Errno 28]).
"""

from __future__ import annotations

import json
import math
import re
import signal
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from gemma4_operator.api.limits import termination_message_tail
from gemma4_operator.catalog import GIB

# The cache holds the download plus 20% for the repository's small files and the engines' own caches under it;
# render.children.model_cache_gib sizes the volume with required_cache_gib, so DiskFull names the same number.
CACHE_MARGIN = 1.2
# hf fetches ENDPOINT/api/agent-harnesses at start-up and logs its failure (huggingface_hub
# utils/_detect_agent.py); a mirror without that endpoint says nothing about the model.
NOISE = "agent-harnesses"
DISK_FULL = ("No space left on device", "[Errno 28]", "Not enough free disk space to download the file")
GATED = ("GatedRepoError", "requires approval.", "Cannot access gated repo for url", "401 Client Error",
         "403 Client Error", "403 Forbidden", "401 Unauthorized")
REVISION_NOT_FOUND = ("RevisionNotFoundError", "Revision not found in", "Revision Not Found for url")
REPO_NOT_FOUND = ("RepositoryNotFoundError", "Repository Not Found for url")
REPO_NOT_FOUND_CLI = re.compile(r"\b(?:Model|Repository) '[^']+' not found\.")
REVISION_IN_URL = re.compile(r"/(?:revision|resolve)/([^/\s]+)")
ERRORISH = ("Error", "error")
EVIDENCE_CHARS = 300


@dataclass(frozen=True)
class DownloadOutcome:
    """How the download Job ended, as the model's status says it."""

    succeeded: bool
    reason: str  # Downloaded | GatedRepository | RepositoryNotFound | RevisionNotFound | DiskFull | DownloadFailed
    message: str  # words a user can act on
    bytes: int | None = None
    seconds: float | None = None

    @property
    def throughput_mbps(self) -> float | None:
        """Megabytes (10**6 bytes) per second, None when unknown."""
        if self.bytes is None or not self.seconds:
            return None
        return self.bytes / 1e6 / self.seconds


@dataclass(frozen=True)
class _Report:
    bytes: int | None
    seconds: float | None
    lines: tuple[str, ...]


def required_cache_gib(download_bytes: int) -> int:
    """The cache size a checkpoint of ``download_bytes`` needs, in GiB (the download plus the margin)."""
    return math.ceil(download_bytes * CACHE_MARGIN / GIB)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _parse(termination_message: str) -> _Report | None:
    """The script's JSON report, or None when the message is something else (the kubelet's log tail, a
    truncated write, an empty message after OOMKilled)."""
    try:
        data = json.loads(termination_message)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("exitCode"), int):
        return None
    size, seconds = _number(data.get("bytes")), _number(data.get("seconds"))
    log = data.get("log")
    lines = tuple(line for line in log.splitlines() if line.strip()) if isinstance(log, str) else ()
    return _Report(None if size is None else int(size), seconds, lines)


def _first(lines: tuple[str, ...], pieces: tuple[str, ...]) -> str | None:
    return next((line for line in lines if any(piece in line for piece in pieces)), None)


def _evidence(line: str) -> str:
    line = " ".join(line.split())
    return line if len(line) <= EVIDENCE_CHARS else line[: EVIDENCE_CHARS - 1] + "…"


def _last_meaningful(lines: tuple[str, ...]) -> str | None:
    """The last error line, else the last line, leaving out hf's hints ("Hint: set HF_DEBUG=1 ...")."""
    useful = [line for line in lines if not line.lstrip().startswith("Hint:")]
    errors = [line for line in useful if any(piece in line for piece in ERRORISH)]
    chosen = errors or useful
    return chosen[-1] if chosen else None


def _revision(lines: tuple[str, ...]) -> str | None:
    for line in lines:
        found = REVISION_IN_URL.search(line)
        if found is not None and any(piece in line for piece in REVISION_NOT_FOUND):
            return unquote(found.group(1).rstrip("."))
    return None


def _classify(lines: tuple[str, ...], repo: str, expected_bytes: int, cache_size: str) -> tuple[str, str] | None:
    """The reason and message of a failure the log explains, or None."""
    lines = tuple(line for line in lines if NOISE not in line)
    if _first(lines, DISK_FULL) is not None:
        return "DiskFull", (
            f"the model cache ran out of space: the checkpoint needs {expected_bytes / GIB:.1f} GiB; set "
            f"storage.modelCache.size to at least {required_cache_gib(expected_bytes)}Gi (it is {cache_size})")
    if _first(lines, GATED) is not None:
        return "GatedRepository", (
            f"the Hub refused {repo} (HTTP 401/403): the repository is gated or private (or does not exist) — "
            f"accept its license on https://huggingface.co/{repo} with the account whose token "
            "model.source.tokenSecretRef names, or set tokenSecretRef to such a token")
    if _first(lines, REVISION_NOT_FOUND) is not None:
        revision = _revision(lines)
        named = f"revision {revision!r}" if revision else "such revision"
        return "RevisionNotFound", (
            f"the Hub has no {named} of {repo} (HTTP 404): correct the revision after '@' in model.source.uri "
            f"(hf://{repo}@REVISION) to a branch, tag or commit of the repository")
    if _first(lines, REPO_NOT_FOUND) is not None or any(REPO_NOT_FOUND_CLI.search(line) for line in lines):
        return "RepositoryNotFound", (
            f"the Hub has no repository {repo} (HTTP 404): correct model.source.uri (hf://OWNER/NAME) "
            "to an existing model repository")
    return None


def _unreported(termination_message: str, exit_code: int) -> DownloadOutcome:
    """A container that ended without the script's report: killed (OOMKilled, the Job's deadline, an
    eviction) or a message that is the kubelet's log fallback."""
    cause = ""
    try:
        name = signal.Signals(exit_code - 128).name if exit_code > 128 else ""
    except ValueError:
        name = ""
    if name:
        cause = f" ({name}: out of memory, the Job's deadline or an eviction)" if name == "SIGKILL" else f" ({name})"
    text = _evidence(termination_message) if termination_message.strip() else "no termination message"
    return DownloadOutcome(False, "DownloadFailed",
                           f"the download stopped with exit code {exit_code}{cause} before it could report: {text}")


def read_outcome(termination_message: str, *, exit_code: int, repo: str, expected_bytes: int,
                 cache_size: str) -> DownloadOutcome:
    """The outcome of the download container that ended with ``exit_code`` and ``termination_message``
    (at most its last 4096 bytes are read: the script's report is never longer)."""
    termination_message = termination_message_tail(termination_message)
    report = _parse(termination_message)
    if exit_code == 0:
        size, seconds = (report.bytes, report.seconds) if report is not None else (None, None)
        done = f"downloaded {repo}" + (f": {size / GIB:.2f} GiB" if size is not None else "")
        if size is not None and seconds:
            done += f" in {seconds:.1f} s ({size / 1e6 / seconds:.1f} MB/s)"
        return DownloadOutcome(True, "Downloaded", done, size, seconds)
    if report is None:
        return _unreported(termination_message, exit_code)
    classified = _classify(report.lines, repo, expected_bytes, cache_size)
    if classified is not None:
        return DownloadOutcome(False, *classified, report.bytes, report.seconds)
    last = _last_meaningful(report.lines)
    why = _evidence(last) if last is not None else "it printed nothing"
    return DownloadOutcome(False, "DownloadFailed", f"the download of {repo} failed (exit code {exit_code}): {why}",
                           report.bytes, report.seconds)
