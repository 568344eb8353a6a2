"""weights/outcome.py: the download container's end (exit code and termination message) as the model's status
reason and words a user can act on. The logs are what ``hf download`` (huggingface_hub 2.4) printed against a
server answering each status, as download_script.py reports them; tests/engine/test_model_download.py gets the
same reasons from the real client end to end."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from gemma4_operator.weights import outcome
from gemma4_operator.weights.outcome import DownloadOutcome, read_outcome, required_cache_gib

REPO = "ggml-org/gemma-4-E2B-it-GGUF"
EXPECTED = 5_524_862_656  # GGUF + mmproj of the e2b Q8_0 row
GATED_LICENSE = (f"accept its license on https://huggingface.co/{REPO} with the account whose token "
                 "model.source.tokenSecretRef names, or set tokenSecretRef to such a token")
URL = f"http://127.0.0.1:8000/{REPO}/resolve/main/gemma-4-E2B-it-Q8_0.gguf"
HARNESS_404 = ("httpx2.HTTPStatusError: Client error '404 Not Found' for url "
               "'http://127.0.0.1:8000/api/agent-harnesses'")


def message(log: str, exit_code: int = 1, size: int = 0, seconds: float = 0.4) -> str:
    return json.dumps({"exitCode": exit_code, "bytes": size, "seconds": seconds, "log": log})


def read(termination: str, exit_code: int = 1) -> DownloadOutcome:
    return read_outcome(termination, exit_code=exit_code, repo=REPO, expected_bytes=EXPECTED, cache_size="5Gi")


FAILURES = {
    # HF_DEBUG=1: the exception's own text, the status code with it
    "gated 401 (GatedRepo)": ("Error: Access denied. Model 'ggml-org/gemma-4-E2B-it-GGUF' requires approval.\n"
                              f"{HARNESS_404}\nhuggingface_hub.errors.GatedRepoError: 401 Client Error.\n\n"
                              f"Cannot access gated repo for url {URL}.", "GatedRepository"),
    "gated 403": (f"huggingface_hub.errors.GatedRepoError: 403 Client Error.\nCannot access gated repo for url {URL}.",
                  "GatedRepository"),
    "private or missing, 401 without a token": (
        f"Error: Model '{REPO}' not found.\nhuggingface_hub.errors.RepositoryNotFoundError: 401 Client Error.\n"
        f"Repository Not Found for url: {URL}.", "GatedRepository"),
    "403 without an error code": (f"huggingface_hub.errors.HfHubHTTPError: \n\n403 Forbidden: None.\n"
                                  f"Cannot access content at: {URL}.", "GatedRepository"),
    "the CLI's line alone": (f"Error: Access denied. Model '{REPO}' requires approval.\n"
                             "Hint: set HF_DEBUG=1 as environment variable for full traceback.", "GatedRepository"),
    "missing 404": (f"Error: Model '{REPO}' not found.\n{HARNESS_404}\n"
                    "huggingface_hub.errors.RepositoryNotFoundError: 404 Client Error.\n\n"
                    f"Repository Not Found for url: {URL}.", "RepositoryNotFound"),
    "missing 404 behind a mirror that refuses hf's agent registry": (
        "httpx2.HTTPStatusError: Client error '401 Unauthorized' for url 'http://mirror/api/agent-harnesses'\n"
        "huggingface_hub.errors.RepositoryNotFoundError: 404 Client Error.", "RepositoryNotFound"),
    "missing, the CLI's line alone": (f"Error: Model '{REPO}' not found.\nIf the repo is private, make sure you are "
                                      "authenticated and your token has the required permissions.",
                                      "RepositoryNotFound"),
    "snapshot fallback to a partial folder": (
        "Returning existing local_dir `/cache/models/x/main` as remote repo cannot be accessed in "
        "`snapshot_download` (404 Client Error.\nRepository Not Found for url: http://hub/api/models/x/revision/main.\n"
        "[download] error: hf exited 0 but mmproj.gguf is missing under /cache/models/x/main", "RepositoryNotFound"),
    "revision": (f"Error: Revision not found in model '{REPO}'.\nhuggingface_hub.errors.RevisionNotFoundError: "
                 f"404 Client Error.\n\nRevision Not Found for url: http://hub/api/models/{REPO}/revision/v%2F2.",
                 "RevisionNotFound"),
    "no space": ("OSError: [Errno 28] No space left on device", "DiskFull"),
    "disk space warning then a failed write": (
        "UserWarning: Not enough free disk space to download the file. The expected file size is: 4967.49 MB. "
        "The target location /cache/models/x/main only has 1024.00 MB free disk space.\n"
        "Error: Invalid value. something", "DiskFull"),
}


@pytest.mark.parametrize(("log", "reason"), list(FAILURES.values()), ids=list(FAILURES))
def test_each_failure_the_hub_or_the_disk_explains_has_its_reason(log: str, reason: str) -> None:
    result = read(message(log))
    assert (result.succeeded, result.reason) == (False, reason)


def test_a_gated_repository_says_accept_the_license_and_give_a_token() -> None:
    result = read(message(FAILURES["gated 401 (GatedRepo)"][0]))
    assert result.message == (f"the Hub refused {REPO} (HTTP 401/403): the repository is gated or private "
                              f"(or does not exist) — {GATED_LICENSE}")


def test_a_missing_repository_names_the_source_uri() -> None:
    result = read(message(FAILURES["missing 404"][0]))
    assert result.message == (f"the Hub has no repository {REPO} (HTTP 404): correct model.source.uri "
                              "(hf://OWNER/NAME) to an existing model repository")


def test_a_missing_revision_names_it_and_the_source_uri() -> None:
    result = read(message(FAILURES["revision"][0]))
    assert result.message == (f"the Hub has no revision 'v/2' of {REPO} (HTTP 404): correct the revision after "
                              f"'@' in model.source.uri (hf://{REPO}@REVISION) to a branch, tag or commit of the "
                              "repository")
    unnamed = read(message(f"Error: Revision not found in model '{REPO}'."))
    assert unnamed.message.startswith(f"the Hub has no such revision of {REPO} (HTTP 404)")


def test_disk_full_says_the_size_needed_and_the_size_set() -> None:
    result = read(message("OSError: [Errno 28] No space left on device"))
    assert result.message == ("the model cache ran out of space: the checkpoint needs 5.1 GiB; set "
                              "storage.modelCache.size to at least 7Gi (it is 5Gi)")
    assert required_cache_gib(EXPECTED) == 7  # 5.1 GiB + 20%, rounded up


def test_any_other_failure_quotes_the_last_meaningful_line() -> None:
    log = ("Request 1: GET http://hub/api/models/x\n"
           "huggingface_hub.errors.HfHubHTTPError: 500 Server Error: Internal Server Error for url: http://hub/x\n"
           "For more details, see https://huggingface.co/docs/huggingface_hub/authentication\n"
           "Hint: set HF_DEBUG=1 as environment variable for full traceback.")
    result = read(message(log, size=123, seconds=2.0))
    assert (result.reason, result.bytes, result.seconds) == ("DownloadFailed", 123, 2.0)
    assert result.message == (f"the download of {REPO} failed (exit code 1): huggingface_hub.errors.HfHubHTTPError: "
                              "500 Server Error: Internal Server Error for url: http://hub/x")


def test_a_failure_without_an_error_line_quotes_the_last_line_and_an_empty_log_says_so() -> None:
    assert read(message("connecting\nstill connecting")).message.endswith("(exit code 1): still connecting")
    assert read(message("")).message.endswith("(exit code 1): it printed nothing")


def test_a_long_line_is_cut_for_the_status() -> None:
    result = read(message("Error: " + "y" * 1000))
    assert len(result.message) < 400 and result.message.endswith("…")


def test_success_carries_size_time_and_throughput() -> None:
    result = read(message("Downloaded", exit_code=0, size=5_000_000_000, seconds=50.0), exit_code=0)
    assert (result.succeeded, result.reason, result.bytes, result.seconds) == (True, "Downloaded", 5_000_000_000, 50.0)
    assert result.throughput_mbps == pytest.approx(100.0)
    assert result.message == f"downloaded {REPO}: 4.66 GiB in 50.0 s (100.0 MB/s)"


def test_success_without_a_report_still_succeeds_with_nothing_measured() -> None:
    result = read("", exit_code=0)
    assert (result.succeeded, result.bytes, result.seconds, result.throughput_mbps) == (True, None, None, None)
    assert result.message == f"downloaded {REPO}"


def test_throughput_is_unknown_without_time() -> None:
    assert DownloadOutcome(True, "Downloaded", "", 10, 0.0).throughput_mbps is None
    assert DownloadOutcome(True, "Downloaded", "", None, 3.0).throughput_mbps is None


GARBAGE = {
    "empty after OOMKilled": ("", 137, "exit code 137 (SIGKILL: out of memory, the Job's deadline or an eviction) "
                                       "before it could report: no termination message"),
    "the kubelet's log fallback": ("Traceback (most recent call last):\n  boom", 1,
                                   "exit code 1 before it could report: Traceback (most recent call last): boom"),
    "truncated JSON": ('{"exitCode": 1, "bytes": 0, "log": "Err', 1, 'before it could report: {"exitCode": 1'),
    "JSON but not ours": ('["exitCode", 1]', 2, "exit code 2 before it could report"),
    "exitCode not a number": ('{"exitCode": "1", "log": "x"}', 1, "before it could report"),
    "SIGTERM": ("", 143, "exit code 143 (SIGTERM) before it could report"),
    "beyond any signal": ("", 255, "exit code 255 before it could report"),
}


@pytest.mark.parametrize(("termination", "code", "words"), list(GARBAGE.values()), ids=list(GARBAGE))
def test_a_message_that_is_not_the_report_is_a_download_failure_with_what_is_known(termination: str, code: int,
                                                                                   words: str) -> None:
    result = read(termination, exit_code=code)
    assert (result.succeeded, result.reason, result.bytes) == (False, "DownloadFailed", None)
    assert result.message.startswith("the download stopped with ") and words in result.message


def test_a_report_longer_than_the_kubelet_keeps_is_read_only_to_its_last_4096_bytes() -> None:
    """The script never writes more; a longer message is someone else's, and only its end is read."""
    long = message("Error: Access denied. Model 'x' requires approval.\n" + "y" * (8 << 20))
    result = read(long)
    assert (result.reason, result.bytes) == ("DownloadFailed", None)
    marker = f"[{len(long) - 4096} characters cut: the operator reads the last 4096 bytes] "
    assert result.message == "the download stopped with exit code 1 before it could report: " + \
        (marker + "y" * 300)[:299] + "…"


def test_wrong_types_in_the_report_are_unknowns_not_crashes() -> None:
    result = read(json.dumps({"exitCode": 1, "bytes": "many", "seconds": True, "log": 7}))
    assert (result.reason, result.bytes, result.seconds) == ("DownloadFailed", None, None)


def test_the_texts_matched_are_huggingface_hub_s_own() -> None:
    spec = importlib.util.find_spec("huggingface_hub")
    assert spec is not None and spec.origin is not None
    sources = "\n".join(p.read_text(encoding="utf-8") for p in Path(spec.origin).parent.rglob("*.py"))
    composed = {"401 Client Error", "403 Client Error", "403 Forbidden", "401 Unauthorized",  # f"{status} ..."
                "No space left on device", "[Errno 28]"}  # the OS's
    for piece in {*outcome.GATED, *outcome.REVISION_NOT_FOUND, *outcome.REPO_NOT_FOUND, *outcome.DISK_FULL} - composed:
        assert piece in sources, piece
    assert "Client Error." in sources and "not found." in sources and "agent-harnesses" in sources
