"""``gemma4-operator download --manifest JSON``: the download Job's process, in the operator's own image.

1. Under the checkpoints' directory, every directory that is neither the checkpoint's nor one of its ancestors
   is removed (an older checkpoint: the cache volume is sized for one); under the adapters' directory, every
   adapter no longer listed, and the listed ones too (they are small, and a changed uri must not mix files).
2. Each artifact of the manifest (weights/artifacts.py) is fetched with huggingface_hub's Python API:
   ``HfApi.repo_info`` first, which raises the Hub's refusal as a typed error carrying the HTTP status
   (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, HfHubHTTPError.response.status_code;
   utils/_http.py hf_raise_for_status), then ``snapshot_download`` of that commit into the artifact's
   directory (``allow_patterns``: the named files). Asking for the commit first also keeps
   ``snapshot_download`` from returning an existing directory when the Hub refuses it
   (_snapshot_download.py: "Returning existing local_dir ... as remote repo cannot be accessed").
3. The checkpoint's config.json (a merged fine-tune's) is checked against the variant, and every adapter goes
   through the preflight (weights/preflight.py), from files read with bounds.
4. At exit, also on SIGTERM, ONE JSON report (weights/artifacts.py Report, at most 4096 bytes) goes to
   ``$GEMMA4_TERMINATION_LOG`` (default ``/dev/termination-log``). The exit code is 0 when the checkpoint is
   there and is the variant, whatever the adapters' verdicts: a refused adapter does not keep the others
   from serving.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

from gemma4_operator.api.adapters import ADAPTER_GGUF
from gemma4_operator.catalog import load_catalog
from gemma4_operator.weights.artifacts import Artifact, FetchError, Kind, Manifest, Report
from gemma4_operator.weights.outcome import fetch_failure
from gemma4_operator.weights.preflight import (
    MAX_CONFIG_BYTES,
    AdapterFiles,
    AdapterVerdict,
    PreflightError,
    check_adapter,
    check_checkpoint,
    header_length,
    read_json,
    tensor_shapes,
)

HF_CACHE = ".cache"  # snapshot_download(local_dir=...) keeps its metadata and partial files in DIR/.cache
EXIT_FAILED, EXIT_MISMATCH = 1, 3


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="the artifacts to fetch, as JSON (rendered by the operator)")


def tree_bytes(path: str | Path, skip: str | None = None) -> int:
    """The size of the files under ``path`` (symlinks not followed), leaving out its child ``skip``."""
    total = 0
    for root, dirs, files in os.walk(path):
        if skip is not None and root == str(path) and skip in dirs:
            dirs.remove(skip)
        total += sum(os.lstat(os.path.join(root, name)).st_size for name in files)
    return total


def prune(root: str, keep: str) -> list[tuple[str, int]]:
    """Remove every directory under ``root`` that is neither ``keep`` nor one of its ancestors; return what
    was removed and its size. Files and symlinks are left alone."""
    root, keep = os.path.abspath(root), os.path.abspath(keep)
    if os.path.commonpath([root, keep]) != root or root == keep:
        raise ValueError(f"{keep} is not inside {root}")
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


def _say(report: Report, line: str) -> None:
    print(f"[download] {line}", flush=True)
    report.log.append(line)


def _fetch_error(artifact: Artifact, error: Exception) -> FetchError:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    number = error.errno if isinstance(error, OSError) and error.errno else None
    return FetchError(artifact.name, type(error).__name__, " ".join(str(error).split()),
                      status if isinstance(status, int) else None, number)


def fetch(artifact: Artifact) -> FetchError | None:
    """The artifact in its directory, or why not (the Hub's typed error, the disk's)."""
    from huggingface_hub import HfApi, constants, snapshot_download  # the Job's dependency, not the operator's

    token: str | bool = os.environ.get(artifact.token_env, "") if artifact.token_env else False
    try:
        # the revision a download takes by default (constants.DEFAULT_REVISION, "main")
        revision = artifact.revision or constants.DEFAULT_REVISION
        info = HfApi().repo_info(artifact.repo, revision=revision, token=token or False)
        snapshot_download(artifact.repo, revision=info.sha, local_dir=artifact.local_dir, token=token or False,
                          allow_patterns=list(artifact.files) or None)
    except Exception as error:  # every failure is reported: the Hub's typed errors carry their HTTP status
        return _fetch_error(artifact, error)
    missing = [f for f in artifact.files if not os.path.isfile(os.path.join(artifact.local_dir, f))]
    if missing:
        return FetchError(artifact.name, "MissingFiles", f"{artifact.repo} has no {', '.join(missing)}", 404)
    return None


def _read_bounded(path: Path, limit: int) -> bytes:
    with path.open("rb") as file:
        return file.read(limit + 1)


def read_adapter(directory: str) -> AdapterFiles:
    """What the preflight needs of a fetched adapter, read with bounds: the config, the safetensors header
    (its length is the file's say, so it is checked before the read) or the .gguf's name."""
    root = Path(directory)
    ggufs = sorted(p.name for p in root.glob("*.gguf"))
    config_path, weights_path = root / "adapter_config.json", root / "adapter_model.safetensors"
    if ggufs and not config_path.exists():
        if len(ggufs) > 1:
            raise PreflightError(f"it holds {len(ggufs)} GGUF files ({', '.join(ggufs[:3])}); an adapter repository "
                                 "holds one")
        return AdapterFiles(gguf_file=ggufs[0])
    config = read_json(_read_bounded(config_path, MAX_CONFIG_BYTES), "adapter_config.json")
    with weights_path.open("rb") as file:
        length = header_length(file.read(8))
        header = file.read(length)
    if len(header) != length:
        raise PreflightError("adapter_model.safetensors ends inside its header")
    return AdapterFiles(config=config, tensors=tensor_shapes(header))


def _preflight(manifest: Manifest, artifact: Artifact) -> AdapterVerdict:
    variant = load_catalog().variants[manifest.variant]
    try:
        files = read_adapter(artifact.local_dir)
    except FileNotFoundError as error:
        return AdapterVerdict(artifact.name, "InvalidConfig", f"{artifact.repo} has no {Path(error.filename).name}: "
                              "an adapter is a PEFT directory (adapter_config.json, adapter_model.safetensors) "
                              "or a .gguf")
    except PreflightError as error:
        return AdapterVerdict(artifact.name, "InvalidConfig", f"{artifact.repo}: {error}")
    return check_adapter(artifact.name, files, variant, manifest.rules)


def _link_gguf(directory: Path) -> None:
    """The adapter's one .gguf as ADAPTER_GGUF, the name llama.cpp's --lora is given."""
    link = directory / ADAPTER_GGUF
    if not link.exists():  # read_adapter has made sure there is exactly one .gguf
        link.symlink_to(next(directory.glob("*.gguf")).name)


def _adapter(manifest: Manifest, artifact: Artifact, report: Report) -> None:
    shutil.rmtree(artifact.local_dir, ignore_errors=True)
    failed = fetch(artifact)
    verdict = _preflight(manifest, artifact) if failed is None else AdapterVerdict(
        artifact.name, *fetch_failure(failed, artifact.repo, artifact.revision, f"the adapter {artifact.name}'s uri"))
    if verdict.accepted and manifest.rules.gguf:
        _link_gguf(Path(artifact.local_dir))
    _say(report, f"adapter {artifact.name}: {verdict.reason}: {verdict.message}")
    report.adapters.append(verdict)


def _checkpoint(manifest: Manifest, artifact: Artifact, report: Report) -> int:
    for path, size in prune(manifest.directory(Kind.CHECKPOINT), artifact.local_dir):
        _say(report, f"removed {path} ({size / 2**30:.2f} GiB): an older checkpoint")
    report.error = fetch(artifact)
    if report.error is not None:
        _say(report, f"error: {report.error.type} {report.error.status or ''} {report.error.message}")
        return EXIT_FAILED
    config = Path(artifact.local_dir) / "config.json"
    if not artifact.files and config.is_file():
        try:
            refusal = check_checkpoint(read_json(_read_bounded(config, MAX_CONFIG_BYTES), "config.json"),
                                       load_catalog().variants[manifest.variant], artifact.repo)
        except PreflightError as error:
            refusal = str(error)
        if refusal is not None:
            report.error = FetchError(artifact.name, "VariantMismatch", refusal)
            _say(report, f"error: {refusal}")
            return EXIT_MISMATCH
    return 0


def _remove_unlisted_adapters(manifest: Manifest, report: Report) -> None:
    root = Path(manifest.directory(Kind.ADAPTER))
    listed = {Path(a.local_dir).name for a in manifest.of(Kind.ADAPTER)}
    for path in sorted(root.iterdir()) if root.is_dir() else ():
        if path.is_dir() and not path.is_symlink() and path.name not in listed:
            shutil.rmtree(path)
            _say(report, f"removed adapter {path.name}: no longer listed")


def _drafter(artifact: Artifact, report: Report) -> int:
    """The MTP drafter, after its checkpoint (into that checkpoint's directory): a failure fails the Job, as the
    plan's engine loads it at start."""
    report.error = fetch(artifact)
    if report.error is not None:
        _say(report, f"error: drafter {report.error.type} {report.error.status or ''} {report.error.message}")
        return EXIT_FAILED
    return 0


def run_download(manifest: Manifest, report: Report) -> int:
    code = 0
    for artifact in manifest.of(Kind.CHECKPOINT):
        code = code or _checkpoint(manifest, artifact, report)
    for artifact in manifest.of(Kind.DRAFTER):
        code = code or _drafter(artifact, report)
    if code == 0:
        _remove_unlisted_adapters(manifest, report)
        for artifact in manifest.of(Kind.ADAPTER):
            _adapter(manifest, artifact, report)
    return code


def cmd_download(args: Any, out: Any) -> int:  # noqa: ARG001 - the CLI's command signature
    manifest = Manifest.from_json(args.manifest)
    report, started = Report(exit_code=1), time.monotonic()
    try:
        report.exit_code = run_download(manifest, report)
    except Exception as error:  # the disk, a removal: reported like a fetch's failure
        report.error = report.error or _fetch_error(manifest.artifacts[0], error)
        _say(report, f"error: {type(error).__name__}: {error}")
        report.exit_code = EXIT_FAILED
    except BaseException as stopped:  # SIGTERM (cli/entry.py Terminated), Ctrl-C: report, then end
        report.exit_code = 128 + int(getattr(stopped, "signum", 2))
        _say(report, f"stopped: {type(stopped).__name__}")
        raise
    finally:
        report.seconds = time.monotonic() - started
        report.bytes = sum(tree_bytes(a.local_dir, skip=HF_CACHE) for a in manifest.artifacts
                           if os.path.isdir(a.local_dir))
        path = os.environ.get("GEMMA4_TERMINATION_LOG", "/dev/termination-log")
        Path(path).write_text(report.to_json(), encoding="utf-8")
    return report.exit_code
