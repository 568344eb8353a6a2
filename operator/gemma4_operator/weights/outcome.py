"""What the download Job's termination report (weights/artifacts.py Report, written by cli/download.py) means
for the model's status and the adapters': a reason and words a user can act on.

The Job reports huggingface_hub's typed errors with the HTTP status they carry (utils/_http.py
``hf_raise_for_status``: GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError,
all HfHubHTTPError with ``response.status_code``); the Hub answers 401 for a gated or private repository
without a token and for a missing one alike (the comment there), so a 401 is worded as "gated or private (or
does not exist)". A full disk is the OS's ENOSPC (errno 28) or huggingface_hub's own check
(file_download.py ``_check_disk_space``: "Not enough free disk space").
"""

from __future__ import annotations

import errno
import json
import math
import signal
from dataclasses import dataclass
from typing import Any

from gemma4_operator.api.limits import termination_message_tail
from gemma4_operator.catalog import GIB
from gemma4_operator.weights.artifacts import FetchError, verdicts_from
from gemma4_operator.weights.preflight import AdapterVerdict

# The cache holds the download plus 20% for the repository's small files and the engines' own caches under it;
# render.children.model_cache_gib sizes the volume with required_cache_gib, so DiskFull names the same number.
CACHE_MARGIN = 1.2
DISK_FULL_WORDS = ("No space left on device", "Not enough free disk space")
ACCESS_DENIED = frozenset({401, 403})
EVIDENCE_CHARS = 300


@dataclass(frozen=True)
class DownloadOutcome:
    """How the download Job ended, as the model's status says it."""

    succeeded: bool
    reason: str  # Downloaded | GatedRepository | RepositoryNotFound | RevisionNotFound | FileNotFound | DiskFull |
    #              VariantMismatch | DownloadFailed
    message: str  # words a user can act on
    bytes: int | None = None
    seconds: float | None = None
    adapters: tuple[AdapterVerdict, ...] = ()  # the preflight's verdicts, one per adapter the Job fetched

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
    error: FetchError | None
    adapters: tuple[AdapterVerdict, ...]
    lines: tuple[str, ...]


def required_cache_gib(download_bytes: int) -> int:
    """The cache size a checkpoint of ``download_bytes`` needs, in GiB (the download plus the margin)."""
    return math.ceil(download_bytes * CACHE_MARGIN / GIB)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error(data: Any) -> FetchError | None:
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None
    return FetchError(str(data.get("artifact") or ""), data["type"], str(data.get("message") or ""),
                      _integer(data.get("status")), _integer(data.get("errno")))


def _parse(termination_message: str) -> _Report | None:
    """The Job's JSON report, or None when the message is something else (the kubelet's log tail, a
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
    return _Report(None if size is None else int(size), seconds, _error(data.get("error")),
                   verdicts_from(data.get("adapters")), lines)


def _evidence(line: str) -> str:
    line = " ".join(line.split())
    return line if len(line) <= EVIDENCE_CHARS else line[: EVIDENCE_CHARS - 1] + "…"


def disk_full(error: FetchError) -> bool:
    return error.errno == errno.ENOSPC or any(words in error.message for words in DISK_FULL_WORDS)


def fetch_failure(error: FetchError, repo: str, revision: str, uri_field: str) -> tuple[str, str]:
    """The reason and words for an artifact the Hub refused or that could not be fetched; ``uri_field`` names
    the setting to correct ("model.source.uri", "the adapter x's uri")."""
    if error.type == "GatedRepoError" or error.status in ACCESS_DENIED:
        return "GatedRepository", (
            f"the Hub refused {repo} (HTTP {error.status or 401}): the repository is gated or private (or does not "
            f"exist) — accept its license on https://huggingface.co/{repo} with the account whose token "
            f"{'model.source.tokenSecretRef' if uri_field == 'model.source.uri' else 'its tokenSecretRef'} names, "
            "or set tokenSecretRef to such a token")
    if error.type == "RevisionNotFoundError":
        named = f"revision {revision!r}" if revision else "such revision"
        return "RevisionNotFound", (
            f"the Hub has no {named} of {repo} (HTTP 404): correct the revision after '@' in {uri_field} "
            f"(hf://{repo}@REVISION) to a branch, tag or commit of the repository")
    if error.type == "RepositoryNotFoundError":
        return "RepositoryNotFound", (
            f"the Hub has no repository {repo} (HTTP 404): correct {uri_field} (hf://OWNER/NAME) to an existing "
            "model repository")
    if error.type in ("EntryNotFoundError", "MissingFiles"):
        return "FileNotFound", f"{_evidence(error.message)} (HTTP 404): correct {uri_field} to name a file it has"
    status = f" (HTTP {error.status})" if error.status else ""
    return "DownloadFailed", f"fetching {repo} failed{status}: {error.type}: {_evidence(error.message)}"


def _classify(report: _Report, repo: str, revision: str, expected_bytes: int, cache_size: str) -> tuple[str, str]:
    error = report.error
    if error is None:
        last = report.lines[-1] if report.lines else None
        return "DownloadFailed", f"the download of {repo} failed: {_evidence(last) if last else 'it printed nothing'}"
    if disk_full(error):
        return "DiskFull", (
            f"the model cache ran out of space: the checkpoint needs {expected_bytes / GIB:.1f} GiB; set "
            f"storage.modelCache.size to at least {required_cache_gib(expected_bytes)}Gi (it is {cache_size})")
    if error.type == "VariantMismatch":
        return "VariantMismatch", error.message
    return fetch_failure(error, repo, revision, "model.source.uri")


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
                 cache_size: str, revision: str = "") -> DownloadOutcome:
    """The outcome of the download container that ended with ``exit_code`` and ``termination_message``
    (at most its last 4096 bytes are read: the Job's report is never longer)."""
    termination_message = termination_message_tail(termination_message)
    report = _parse(termination_message)
    adapters = report.adapters if report is not None else ()
    if exit_code == 0:
        size, seconds = (report.bytes, report.seconds) if report is not None else (None, None)
        done = f"downloaded {repo}" + (f": {size / GIB:.2f} GiB" if size is not None else "")
        if size is not None and seconds:
            done += f" in {seconds:.1f} s ({size / 1e6 / seconds:.1f} MB/s)"
        return DownloadOutcome(True, "Downloaded", done, size, seconds, adapters)
    if report is None:
        return _unreported(termination_message, exit_code)
    return DownloadOutcome(False, *_classify(report, repo, revision, expected_bytes, cache_size), report.bytes,
                           report.seconds, adapters)
