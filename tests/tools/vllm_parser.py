"""Check rendered `vllm serve` command lines with vLLM 0.32.0's own argument parser, from our test suite.

vLLM cannot be imported in the project venv (it would drag in torch and CUDA), so this runs
``vllm_argcheck.py`` in a dedicated venv (vLLM on the CPU) made by ``vllm_venv.sh`` (first use: ~3-4 min, 5.1 GB under
``${GEMMA4_TOOLS_CACHE:-~/.cache/gemma4-operator}``). Every call costs one subprocess that builds the parser
(~10-15 s on 2 cores), so check all command lines of a test module in one batch::

    results = check_vllm_command_lines([argv1, argv2, ...])
    assert results[0].ok, results[0].error
    assert results[0].parsed["tensor_parallel_size"] == 2
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VLLM_VERSION = "0.32.0"
TOOLS_DIR = Path(__file__).resolve().parent
VENV_SCRIPT = TOOLS_DIR / "vllm_venv.sh"
ARGCHECK_SCRIPT = TOOLS_DIR / "vllm_argcheck.py"


class VllmToolError(RuntimeError):
    """The vLLM venv could not be built, or the checker itself failed (not: a command line was rejected)."""


@dataclass(frozen=True)
class VllmParseResult:
    """vLLM's verdict on one command line.

    ``parsed`` holds selected engine/frontend fields after ``AsyncEngineArgs.from_cli_args`` (model,
    tensor_parallel_size, max_model_len, kv_cache_dtype, gpu_memory_utilization, limit_mm_per_prompt, ...; see
    ``SELECTED_FIELDS`` in vllm_argcheck.py); ``non_default`` every parsed attribute that differs from a bare
    ``vllm serve`` (keyed by argparse dest, e.g. ``model_tag``); ``warnings`` vLLM's WARNING+ log messages.
    """

    argv: tuple[str, ...]
    ok: bool
    error: str | None
    parsed: Mapping[str, Any] = field(default_factory=dict)
    non_default: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


def tools_cache_dir() -> Path:
    """Where test tools are cached: ``$GEMMA4_TOOLS_CACHE``, default ``~/.cache/gemma4-operator``."""
    return Path(os.environ.get("GEMMA4_TOOLS_CACHE") or Path.home() / ".cache" / "gemma4-operator")


@functools.cache
def ensure_vllm_venv() -> Path:
    """Builds the vLLM venv if needed (idempotent; milliseconds when complete); returns its python."""
    proc = subprocess.run(
        ["bash", str(VENV_SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise VllmToolError(f"{VENV_SCRIPT.name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    python = Path(proc.stdout.strip().splitlines()[-1])
    if not python.is_file():
        raise VllmToolError(f"{VENV_SCRIPT.name} printed {python}, which does not exist")
    return python


def _run_argcheck(stdin: str, *extra: str, timeout: float) -> str:
    return run_in_vllm_venv(ARGCHECK_SCRIPT, stdin, *extra, timeout=timeout)


def run_in_vllm_venv(script: Path, stdin: str, *extra: str, timeout: float) -> str:
    """Runs one of our scripts with the vLLM venv's python (CPU platform); returns its stdout."""
    python = ensure_vllm_venv()
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    env.pop("PYTHONPATH", None)  # never mix our venv's packages into vLLM's
    proc = subprocess.run(
        [str(python), str(script), *extra],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise VllmToolError(f"{script.name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    for line in proc.stderr.splitlines():
        if line.startswith(f"{script.stem}:"):  # the timing line
            print(line, file=sys.stderr)
    return proc.stdout


def check_vllm_command_lines(argvs: Sequence[Sequence[str]], *, timeout: float = 600.0) -> list[VllmParseResult]:
    """Checks each ``["vllm", "serve", ...]`` argv with vLLM's serve parser; one subprocess for the batch.

    Results are in input order. A rejected command line gives ``ok=False`` and vLLM's message in ``error``
    (e.g. ``vllm: error: unrecognized arguments: --max-model-length 5``); only tool failures raise.
    """
    batch = [list(argv) for argv in argvs]
    if not batch:
        return []
    raw: Any = json.loads(_run_argcheck(json.dumps(batch), timeout=timeout))
    if not isinstance(raw, list) or len(raw) != len(batch):
        raise VllmToolError(f"vllm_argcheck.py returned {type(raw).__name__} for {len(batch)} command lines")
    return [
        VllmParseResult(
            argv=tuple(argv),
            ok=bool(item["ok"]),
            error=item.get("error"),
            parsed=item.get("parsed") or {},
            non_default=item.get("non_default") or {},
            warnings=tuple(item.get("warnings") or ()),
        )
        for argv, item in zip(batch, raw, strict=True)
    ]


def check_vllm_command_line(argv: Sequence[str], *, timeout: float = 600.0) -> VllmParseResult:
    """Single command line; prefer :func:`check_vllm_command_lines` for several (parser build is per call)."""
    return check_vllm_command_lines([argv], timeout=timeout)[0]


@functools.cache
def registered_vllm_parsers() -> Mapping[str, frozenset[str]]:
    """vLLM's registered names: ``{"tool_call_parsers": {...}, "reasoning_parsers": {...}}``."""
    raw: Any = json.loads(_run_argcheck("", "--list-parsers", timeout=600.0))
    return {key: frozenset(names) for key, names in raw.items()}
