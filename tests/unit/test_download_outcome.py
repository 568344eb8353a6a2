"""weights/outcome.py: the download container's end (exit code and termination report) as the model's status
reason and words a user can act on. The reports carry huggingface_hub's typed errors with their HTTP status, as
cli/download.py writes them; tests/engine/test_model_download.py and tests/unit/test_download_job.py get the
same errors from the real client against a stand-in Hub."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from gemma4_operator.weights import outcome
from gemma4_operator.weights.outcome import DownloadOutcome, read_outcome, required_cache_gib

REPO = "ggml-org/gemma-4-E2B-it-GGUF"
EXPECTED = 5_524_862_656  # GGUF + mmproj of the e2b Q8_0 row
GATED_LICENSE = (f"accept its license on https://huggingface.co/{REPO} with the account whose token "
                 "model.source.tokenSecretRef names, or set tokenSecretRef to such a token")


def message(error: dict[str, Any] | None = None, exit_code: int = 1, size: int = 0, seconds: float = 0.4,
            log: str = "", adapters: list[dict[str, Any]] | None = None) -> str:
    error = None if error is None else {"artifact": "model", "message": "", "status": None, "errno": None, **error}
    return json.dumps({"exitCode": exit_code, "bytes": size, "seconds": seconds, "error": error,
                       "adapters": adapters or [], "log": log})


def read(termination: str, exit_code: int = 1, revision: str = "") -> DownloadOutcome:
    return read_outcome(termination, exit_code=exit_code, repo=REPO, expected_bytes=EXPECTED, cache_size="5Gi",
                        revision=revision)


FAILURES = {
    "gated 401": ({"type": "GatedRepoError", "status": 401}, "GatedRepository"),
    "gated 403": ({"type": "GatedRepoError", "status": 403}, "GatedRepository"),
    "private or missing, 401 without a token": ({"type": "RepositoryNotFoundError", "status": 401},
                                                "GatedRepository"),
    "403 without an error code": ({"type": "HfHubHTTPError", "status": 403}, "GatedRepository"),
    "missing 404": ({"type": "RepositoryNotFoundError", "status": 404}, "RepositoryNotFound"),
    "revision": ({"type": "RevisionNotFoundError", "status": 404}, "RevisionNotFound"),
    "a named file the repository lacks": ({"type": "EntryNotFoundError", "status": 404,
                                           "message": "404 Client Error. Entry Not Found for url: x"}, "FileNotFound"),
    "no space": ({"type": "OSError", "errno": 28, "message": "[Errno 28] No space left on device"}, "DiskFull"),
    "huggingface_hub's disk check": ({"type": "OSError", "message": "Not enough free disk space to download the "
                                                                   "file."}, "DiskFull"),
    "a merged fine-tune of another size": ({"type": "VariantMismatch", "message": "x's config.json is not Gemma 4"},
                                           "VariantMismatch"),
    "the Hub down": ({"type": "HfHubHTTPError", "status": 503, "message": "503 Server Error"}, "DownloadFailed"),
}


@pytest.mark.parametrize(("error", "reason"), list(FAILURES.values()), ids=list(FAILURES))
def test_each_failure_the_hub_or_the_disk_explains_has_its_reason(error: dict[str, Any], reason: str) -> None:
    result = read(message(error))
    assert (result.succeeded, result.reason) == (False, reason), result.message


def test_a_gated_repository_says_accept_the_license_and_give_a_token() -> None:
    result = read(message({"type": "GatedRepoError", "status": 403}))
    assert result.message == (f"the Hub refused {REPO} (HTTP 403): the repository is gated or private (or does not "
                              f"exist) — {GATED_LICENSE}")


def test_a_missing_repository_names_the_source_uri() -> None:
    result = read(message({"type": "RepositoryNotFoundError", "status": 404}))
    assert result.message == (f"the Hub has no repository {REPO} (HTTP 404): correct model.source.uri "
                              "(hf://OWNER/NAME) to an existing model repository")


def test_a_missing_revision_names_it_and_the_source_uri() -> None:
    result = read(message({"type": "RevisionNotFoundError", "status": 404}), revision="v/2")
    assert result.message == (f"the Hub has no revision 'v/2' of {REPO} (HTTP 404): correct the revision after '@' "
                              f"in model.source.uri (hf://{REPO}@REVISION) to a branch, tag or commit of the "
                              "repository")


def test_disk_full_says_the_size_needed_and_the_size_set() -> None:
    result = read(message({"type": "OSError", "errno": 28}))
    assert result.message == ("the model cache ran out of space: the checkpoint needs 5.1 GiB; set "
                              "storage.modelCache.size to at least 7Gi (it is 5Gi)")
    assert required_cache_gib(EXPECTED) == 7


def test_a_merged_fine_tune_of_another_size_keeps_the_preflight_s_words() -> None:
    words = "me/x's config.json is not Gemma 4 E2B: num_hidden_layers 60 (Gemma 4 E2B: 35)"
    assert read(message({"type": "VariantMismatch", "message": words}), exit_code=3).message == words


def test_any_other_failure_names_the_error_and_its_status() -> None:
    result = read(message({"type": "HfHubHTTPError", "status": 503, "message": "503 Server Error: x " * 40}))
    assert result.message.startswith(f"fetching {REPO} failed (HTTP 503): HfHubHTTPError: 503 Server Error: x")
    assert result.message.endswith("…") and len(result.message) < 400


def test_a_failure_without_an_error_quotes_the_last_line_and_an_empty_log_says_so() -> None:
    assert read(message(log="first\nstopped: Terminated")).message.endswith(": stopped: Terminated")
    assert read(message()).message == f"the download of {REPO} failed: it printed nothing"


def test_success_carries_size_time_throughput_and_the_adapters_verdicts() -> None:
    adapters = [{"name": "fr", "reason": "Accepted", "message": "LoRA rank 16", "rank": 16, "targets": ["q_proj"],
                 "towers": False}, {"name": "bad", "reason": "DoRA", "message": "no"}, {"reason": "x"}, "junk"]
    result = read(message(exit_code=0, size=2_000_000_000, seconds=10.0, adapters=adapters), exit_code=0)
    assert (result.succeeded, result.reason, result.bytes) == (True, "Downloaded", 2_000_000_000)
    assert result.message == f"downloaded {REPO}: 1.86 GiB in 10.0 s (200.0 MB/s)"
    assert [(v.name, v.reason, v.rank, v.target_modules) for v in result.adapters] == [
        ("fr", "Accepted", 16, ("q_proj",)), ("bad", "DoRA", None, ())]


def test_success_without_a_report_still_succeeds_with_nothing_measured() -> None:
    result = read("", exit_code=0)
    assert (result.succeeded, result.bytes, result.seconds, result.adapters) == (True, None, None, ())


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
    long = message({"type": "GatedRepoError", "status": 401}, log="y" * (8 << 20))
    result = read(long)
    assert (result.reason, result.bytes) == ("DownloadFailed", None)
    marker = f"[{len(long) - 4096} characters cut: the operator reads the last 4096 bytes] "
    assert result.message == "the download stopped with exit code 1 before it could report: " + \
        (marker + "y" * 300)[:299] + "…"


def test_wrong_types_in_the_report_are_unknowns_not_crashes() -> None:
    result = read(json.dumps({"exitCode": 1, "bytes": "many", "seconds": True, "log": 7, "error": {"type": 3},
                              "adapters": {"name": "x"}}))
    assert (result.reason, result.bytes, result.seconds, result.adapters) == ("DownloadFailed", None, None, ())


def test_the_error_types_matched_are_huggingface_hub_s_own() -> None:
    spec = importlib.util.find_spec("huggingface_hub")
    assert spec is not None and spec.origin is not None
    errors = (Path(spec.origin).parent / "errors.py").read_text(encoding="utf-8")
    for name in ("GatedRepoError", "RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError",
                 "HfHubHTTPError"):
        assert f"class {name}(" in errors, name
    sources = "\n".join(p.read_text(encoding="utf-8") for p in Path(spec.origin).parent.rglob("*.py"))
    assert all(words in sources for words in outcome.DISK_FULL_WORDS if words != "No space left on device")
