"""weights/download_script.py, run as the download Job runs it (``python3 -c SOURCE --prune-root ROOT -- hf
download ...``) with a stand-in ``hf``: a small Python script that writes the named files (or fails, or
sleeps) the way the real CLI would. The real ``hf`` against a stand-in Hub is the engine tier's
tests/engine/test_model_download.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from gemma4_operator.weights import download_script_source

# The stand-in: `hf download REPO FILE... --local-dir DIR`; FAKE_HF_MODE picks what it does.
FAKE_HF = textwrap.dedent("""\
    import os, signal, sys, time
    args = sys.argv[1:]
    local_dir = args[args.index("--local-dir") + 1]
    files = [a for a in args[2:args.index("--local-dir")] if not a.startswith("-")]
    mode = os.environ.get("FAKE_HF_MODE", "ok")
    if mode == "sleep":
        signal.signal(signal.SIGTERM, lambda *_: (print("hf: got SIGTERM, stopping", flush=True), sys.exit(42)))
        print("hf: downloading", flush=True)
        time.sleep(30)
        sys.exit(0)
    if mode == "fail":
        print("    raise HTTPStatusError(message, request=request)", flush=True)  # a traceback's frame
        print("\\x1b[1m\\x1b[31mError: Model 'org/repo' not found.\\x1b[0m", file=sys.stderr, flush=True)
        for i in range(int(os.environ.get("FAKE_HF_LINES", "0"))):
            print(f"line {i}: " + "x" * 300, flush=True)
        sys.exit(int(os.environ.get("FAKE_HF_CODE", "1")))
    os.makedirs(os.path.join(local_dir, ".cache", "huggingface"), exist_ok=True)
    with open(os.path.join(local_dir, ".cache", "huggingface", "big.incomplete"), "wb") as f:
        f.write(b"p" * 5000)
    for i in range(3):
        sys.stderr.write(f"file.gguf: {i * 50}%|###   |\\r")
    written = files if mode == "ok" else files[:-1]  # "partial": exits 0 without the last file
    for name in written:
        with open(os.path.join(local_dir, name), "wb") as f:
            f.write(b"g" * 1000)
    print(f"Downloaded\\n  path: {local_dir}", flush=True)
""")


@pytest.fixture
def fake_hf(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "hf"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\n{FAKE_HF}", encoding="utf-8")
    path.chmod(0o755)
    return path


def command(hf: Path | str, local_dir: Path, *files: str) -> list[str]:
    return [str(hf), "download", "org/repo", *files, "--local-dir", str(local_dir)]


def start(tmp_path: Path, root: Path, cmd: list[str], **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", download_script_source(), "--prune-root", str(root), "--", *cmd],
        env={**os.environ, "GEMMA4_TERMINATION_LOG": str(tmp_path / "termination"), **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run(tmp_path: Path, root: Path, cmd: list[str], **env: str) -> tuple[int, str, dict[str, Any]]:
    proc = start(tmp_path, root, cmd, **env)
    out, _ = proc.communicate(timeout=60)
    raw = (tmp_path / "termination").read_bytes()
    assert len(raw) <= 4096
    return proc.returncode, out, json.loads(raw)


def make_tree(root: Path, files: dict[str, int]) -> None:
    for name, size in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"o" * size)


def test_older_checkpoints_are_removed_and_the_new_one_is_downloaded(tmp_path: Path, fake_hf: Path) -> None:
    root = tmp_path / "models"
    local = root / "org" / "repo" / "main"
    make_tree(root, {"org/repo/v1/old.gguf": 3000, "org/other/main/x.gguf": 2000, "stale/a/b.bin": 100,
                     "note.txt": 10, "org/repo/main/.cache/huggingface/download/kept.metadata": 7})
    code, out, report = run(tmp_path, root, command(fake_hf, local, "m.gguf", "mmproj.gguf"))
    assert code == 0 and report["exitCode"] == 0
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "note.txt", "org/repo/main/.cache/huggingface/big.incomplete",
        "org/repo/main/.cache/huggingface/download/kept.metadata", "org/repo/main/m.gguf",
        "org/repo/main/mmproj.gguf"]
    for removed in ("org/other", "org/repo/v1", "stale"):
        assert f"removed {root / removed} (" in out
    assert report["bytes"] == 2000  # the two files, not hf's .cache
    assert report["seconds"] > 0
    # progress bars reach the log, but the report keeps only whole lines
    assert "file.gguf: 50%|###   |" in out
    assert "50%" not in report["log"] and "path: " + str(local) in report["log"]


def test_a_first_download_into_an_empty_cache_prunes_nothing(tmp_path: Path, fake_hf: Path) -> None:
    root = tmp_path / "models"
    code, out, report = run(tmp_path, root, command(fake_hf, root / "org" / "repo" / "main", "m.gguf"))
    assert (code, report["bytes"]) == (0, 1000)
    assert "removed" not in out


def test_a_local_dir_outside_the_prune_root_is_refused_and_nothing_is_removed(tmp_path: Path, fake_hf: Path) -> None:
    root = tmp_path / "models"
    make_tree(root, {"org/repo/v1/old.gguf": 10})
    code, _, report = run(tmp_path, root, command(fake_hf, tmp_path / "elsewhere", "m.gguf"))
    assert code == report["exitCode"] == 1
    assert f"is not inside --prune-root {root}" in report["log"]
    assert (root / "org/repo/v1/old.gguf").is_file() and not (tmp_path / "elsewhere").exists()


def test_the_command_s_exit_code_is_the_script_s_and_the_error_line_comes_first(tmp_path: Path,
                                                                                 fake_hf: Path) -> None:
    root = tmp_path / "models"
    code, out, report = run(tmp_path, root, command(fake_hf, root / "r" / "main", "m.gguf"),
                            FAKE_HF_MODE="fail", FAKE_HF_CODE="3", FAKE_HF_LINES="3")
    assert code == report["exitCode"] == 3
    assert "\x1b[31mError: Model 'org/repo' not found." in out  # passed through unchanged
    log = report["log"].split("\n")
    assert log[0] == "Error: Model 'org/repo' not found."  # ANSI colours stripped
    # then the tail, without the error line a second time; the frame is no error line
    assert log[1:] == ["    raise HTTPStatusError(message, request=request)",
                       *(f"line {i}: " + "x" * 300 for i in range(3))]


def test_the_report_fits_the_kubelet_s_4096_bytes_keeping_the_error_and_the_last_lines(tmp_path: Path,
                                                                                        fake_hf: Path) -> None:
    root = tmp_path / "models"
    code, _, report = run(tmp_path, root, command(fake_hf, root / "r" / "main", "m.gguf"),
                          FAKE_HF_MODE="fail", FAKE_HF_LINES="500")
    assert code == 1
    raw = (tmp_path / "termination").read_bytes()
    assert 3500 < len(raw) <= 4096
    log = report["log"].split("\n")
    assert log[0] == "Error: Model 'org/repo' not found."
    assert log[-1] == "line 499: " + "x" * 300  # the newest tail line survives, the oldest go
    assert len(log) < 30


def test_a_missing_command_fails_with_127_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "models"
    code, _, report = run(tmp_path, root, command(tmp_path / "no-such-hf", root / "r" / "main", "m.gguf"))
    assert code == report["exitCode"] == 127
    assert "No such file or directory" in report["log"] and "no-such-hf" in report["log"]


def test_an_exit_0_that_left_a_named_file_missing_is_a_failure(tmp_path: Path, fake_hf: Path) -> None:
    # hf's snapshot download returns an existing non-empty --local-dir when the Hub refuses it
    root = tmp_path / "models"
    local = root / "r" / "main"
    code, _, report = run(tmp_path, root, command(fake_hf, local, "m.gguf", "mmproj.gguf"), FAKE_HF_MODE="partial")
    assert code == report["exitCode"] == 1
    assert f"exited 0 but mmproj.gguf is missing under {local}" in report["log"]


def test_sigterm_reaches_the_download_and_its_exit_code_is_reported(tmp_path: Path, fake_hf: Path) -> None:
    root = tmp_path / "models"
    proc = start(tmp_path, root, command(fake_hf, root / "r" / "main", "m.gguf"), FAKE_HF_MODE="sleep")
    assert proc.stdout is not None
    assert proc.stdout.readline() == "hf: downloading\n"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert time.monotonic() - t0 < 10  # stopped by the signal, not by the 30 s sleep
    assert proc.returncode == 42 and "hf: got SIGTERM, stopping" in out
    report = json.loads((tmp_path / "termination").read_text(encoding="utf-8"))
    assert report["exitCode"] == 42 and "got SIGTERM" in report["log"]


def test_a_child_killed_by_a_signal_exits_128_plus_the_signal(tmp_path: Path) -> None:
    root = tmp_path / "models"
    cmd = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
           "--local-dir", str(root / "r" / "main")]
    code, _, report = run(tmp_path, root, cmd)
    assert code == report["exitCode"] == 128 + signal.SIGKILL


def test_a_command_without_local_dir_is_refused_before_anything_is_removed(tmp_path: Path, fake_hf: Path) -> None:
    root = tmp_path / "models"
    make_tree(root, {"org/repo/v1/old.gguf": 10})
    code, _, report = run(tmp_path, root, [str(fake_hf), "download", "org/repo", "m.gguf"])
    assert code == report["exitCode"] == 2
    assert "no --local-dir DIR" in report["log"] and (root / "org/repo/v1/old.gguf").is_file()


def test_usage_without_the_prune_root() -> None:
    proc = subprocess.run([sys.executable, "-c", download_script_source(), "hf", "download", "org/repo"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 1 and "usage: python3 -c SOURCE --prune-root ROOT --" in proc.stderr
