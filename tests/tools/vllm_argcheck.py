"""Validate `vllm serve` command lines with vLLM's own argument parser (runs in the vLLM venv, not ours).

Run with the interpreter made by tests/tools/vllm_venv.sh:

    echo '[["vllm", "serve", "google/gemma-4-E4B-it", "--max-model-len", "8192"]]' \\
        | VLLM_TARGET_DEVICE=cpu <cache>/vllm-0.32.0/bin/python tests/tools/vllm_argcheck.py

stdin:  a JSON list of command lines; each is a list of argv strings starting with "vllm", "serve"
        (a plain string is accepted too and split with shlex).
stdout: a JSON list, one object per command line, in order:
        {"ok": bool, "error": str | null, "parsed": {selected fields} | null,
         "non_default": {every namespace attribute that differs from a bare `vllm serve`} | null,
         "warnings": [log records of level WARNING+ emitted by vLLM while checking this line]}

Per command line this does what `vllm serve` does before it loads a model: the serve parser's parse_args
(argparse errors, i.e. SystemExit, are captured with their message), ServeSubcommand.validate
(validate_parsed_serve_args), args.model = args.model_tag, AsyncEngineArgs.from_cli_args, and the API server's
parser-name checks against ToolParserManager / ReasoningParserManager. The parser-name check is stricter than vLLM,
which checks --tool-call-parser only together with --enable-auto-tool-choice: here any given parser name must be
registered. --speculative-config's JSON is checked against SpeculativeConfig's own fields (each key one of its
fields, each value valid for that field's type and bounds, as pydantic checks them when vLLM builds the config;
its __post_init__, which loads the drafter's config.json, is not run).
No model config is fetched (create_engine_config is not called; it would need the network).

The parser is built once per process (6-10 s); each further command line takes milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import enum
import io
import json
import logging
import os
import shlex
import sys
import time
from typing import Annotated, Any, TextIO

SELECTED_FIELDS: tuple[str, ...] = (
    "model",
    "revision",
    "served_model_name",
    "host",
    "port",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "data_parallel_size",
    "enable_expert_parallel",
    "max_model_len",
    "max_num_batched_tokens",
    "max_num_seqs",
    "gpu_memory_utilization",
    "kv_cache_dtype",
    "dtype",
    "quantization",
    "limit_mm_per_prompt",
    "language_model_only",
    "enable_prefix_caching",
    "enable_auto_tool_choice",
    "tool_call_parser",
    "reasoning_parser",
    "trust_remote_code",
    "enable_lora",
    "max_loras",
    "max_lora_rank",
    "max_cpu_loras",
    "lora_target_modules",
    "enable_tower_connector_lora",
    "lora_modules",
    "speculative_config",
)


class _Collect(logging.Handler):
    """Collects vLLM's WARNING+ log messages for the command line being checked."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(record.getMessage())


def _jsonable(value: Any) -> Any:
    """Converts vLLM's parsed values (enums, dataclass configs, sets, ...) into plain JSON values."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        with contextlib.suppress(Exception):
            return _jsonable(dataclasses.asdict(value))
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        with contextlib.suppress(Exception):
            return _jsonable(dump())
    return repr(value)


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return repr(a) == repr(b)


class Checker:
    """Holds vLLM's serve parser (built once) and checks command lines against it."""

    def __init__(self) -> None:
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
        from vllm.config import SpeculativeConfig  # type: ignore[import-not-found,unused-ignore]
        from vllm.engine.arg_utils import AsyncEngineArgs  # type: ignore[import-not-found,unused-ignore]
        from vllm.entrypoints.cli.serve import ServeSubcommand  # type: ignore[import-not-found,unused-ignore]
        from vllm.reasoning import ReasoningParserManager  # type: ignore[import-not-found,unused-ignore]
        from vllm.tool_parsers import ToolParserManager  # type: ignore[import-not-found,unused-ignore]
        from vllm.utils.argparse_utils import FlexibleArgumentParser  # type: ignore[import-not-found,unused-ignore]

        self._speculative_fields: dict[str, Any] = dict(SpeculativeConfig.__pydantic_fields__)
        self._engine_args_cls: Any = AsyncEngineArgs
        self._serve = ServeSubcommand()
        self._root: Any = FlexibleArgumentParser(prog="vllm")
        self._serve.subparser_init(self._root.add_subparsers(dest="subparser"))
        self.tool_parsers: frozenset[str] = frozenset(ToolParserManager.list_registered())
        self.reasoning_parsers: frozenset[str] = frozenset(ReasoningParserManager.list_registered())
        self._baseline: dict[str, Any] = vars(self._root.parse_args(["serve"]))
        self._log = _Collect()
        logging.getLogger("vllm").addHandler(self._log)

    def _speculative_problems(self, config: dict[str, Any]) -> list[str]:
        problems = []
        for key, value in config.items():
            field = self._speculative_fields.get(key.replace("-", "_"))
            if field is None:
                problems.append(f"{key}: not a SpeculativeConfig field")
            elif (problem := _field_problem(field, value)) is not None:
                problems.append(f"{key}: {problem}")
        return problems

    def check(self, argv: list[str] | str) -> dict[str, Any]:
        self._log.messages = []
        result: dict[str, Any] = {"ok": False, "error": None, "parsed": None, "non_default": None}
        try:
            result.update(self._check(argv))
            result["ok"] = True
        except _ArgvError as exc:
            result["error"] = str(exc)
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
        result["warnings"] = list(self._log.messages)
        return result

    def _check(self, argv: list[str] | str) -> dict[str, Any]:
        if isinstance(argv, str):
            argv = shlex.split(argv)
        if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
            raise _ArgvError("a command line must be a list of strings")
        if argv[:2] != ["vllm", "serve"]:
            raise _ArgvError(f"a command line must start with 'vllm', 'serve'; got {argv[:2]!r}")
        if any(a == "-h" or a == "--help" or a.startswith("--help=") for a in argv[2:]):
            raise _ArgvError("command line asks for --help")

        captured = io.StringIO()
        try:
            with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
                ns = self._root.parse_args(argv[1:])
        except SystemExit as exc:
            lines = [ln for ln in captured.getvalue().splitlines() if ln and not ln.startswith("usage:")]
            raise _ArgvError("\n".join(lines) or f"argparse exited with status {exc.code}") from None

        non_default = {
            k: _jsonable(v) for k, v in vars(ns).items() if k not in self._baseline or not _equal(v, self._baseline[k])
        }
        # From here on vLLM may mutate the namespace's (shared, default) config objects: work on a copy so one
        # command line never leaks into the next or into the baseline.
        ns = copy.deepcopy(ns)
        self._serve.validate(ns)  # validate_parsed_serve_args, as `vllm serve` does right after parsing
        if getattr(ns, "model_tag", None) is not None:
            ns.model = ns.model_tag  # done by ServeSubcommand.cmd in real `vllm serve`
        engine_args = self._engine_args_cls.from_cli_args(ns)

        tool_parser = getattr(ns, "tool_call_parser", None)
        if tool_parser and tool_parser not in self.tool_parsers:
            raise _ArgvError(
                f"invalid tool call parser: {tool_parser} (choose from {','.join(sorted(self.tool_parsers))})"
            )
        drafting = getattr(engine_args, "speculative_config", None)
        if drafting:
            problems = self._speculative_problems(drafting)
            if problems:
                raise _ArgvError("invalid --speculative-config: " + "; ".join(problems))
        reasoning_parser = getattr(engine_args, "reasoning_parser", None) or getattr(ns, "reasoning_parser", None)
        if reasoning_parser and reasoning_parser not in self.reasoning_parsers:
            raise _ArgvError(
                f"invalid reasoning parser: {reasoning_parser} (choose from {','.join(sorted(self.reasoning_parsers))})"
            )

        if getattr(engine_args, "enable_lora", False):
            _check_lora_config(engine_args)
        parsed: dict[str, Any] = {}
        for name in SELECTED_FIELDS:
            if hasattr(engine_args, name):
                parsed[name] = _jsonable(getattr(engine_args, name))
            elif hasattr(ns, name):
                parsed[name] = _jsonable(getattr(ns, name))
        return {"parsed": parsed, "non_default": non_default}


def _check_lora_config(engine_args: Any) -> None:
    """vLLM's own LoRAConfig validation (the rank ladder, max_cpu_loras >= max_loras), which `vllm serve` runs
    in create_engine_config, after the point this checker stops (create_engine_config needs the model)."""
    from vllm.config.lora import LoRAConfig

    try:
        LoRAConfig(max_lora_rank=engine_args.max_lora_rank, max_loras=engine_args.max_loras,
                   max_cpu_loras=engine_args.max_cpu_loras, target_modules=engine_args.lora_target_modules,
                   enable_tower_connector_lora=engine_args.enable_tower_connector_lora)
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        raise _ArgvError(f"LoRAConfig: {e}") from e


def _field_problem(field: Any, value: Any) -> str | None:
    from pydantic import TypeAdapter

    annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    try:
        TypeAdapter(annotation).validate_python(value)
    except Exception as exc:
        return " ".join(str(exc).split())
    return None


class _ArgvError(Exception):
    """A command line that vLLM (or this checker) rejects, with a human-readable message."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list-parsers", action="store_true", help="print the registered parser names and exit")
    opts = ap.parse_args(argv)

    # vLLM and its dependencies log to stdout: keep fd 1 for our JSON only and send everything else to stderr.
    out: TextIO = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)

    t0 = time.monotonic()
    requests: list[Any] = []
    if not opts.list_parsers:
        loaded: Any = json.load(sys.stdin)
        if not isinstance(loaded, list):
            print("stdin must hold a JSON list of command lines", file=sys.stderr)
            return 2
        requests = loaded
    checker = Checker()
    t1 = time.monotonic()
    if opts.list_parsers:
        listing = {
            "tool_call_parsers": sorted(checker.tool_parsers),
            "reasoning_parsers": sorted(checker.reasoning_parsers),
        }
        json.dump(listing, out, indent=1)
        out.write("\n")
        out.flush()
        return 0
    results = [checker.check(cmd) for cmd in requests]
    t2 = time.monotonic()
    json.dump(results, out)
    out.write("\n")
    out.flush()
    print(
        f"vllm_argcheck: parser built in {t1 - t0:.2f}s,",
        f"{len(results)} command line(s) checked in {t2 - t1:.3f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
