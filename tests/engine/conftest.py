"""Fixtures for the engine tier: llama.cpp's real HTTP server (xllamacpp) serving a tiny random Gemma 4.

* ``tiny_gguf`` / ``tiny_mm_gguf`` / ``tiny_mmproj_gguf`` (session): the committed GGUFs in tests/data
  (regenerate with ``tests/engine/make_tiny_gemma4.sh [--multimodal]``).
* ``tiny_settings`` (session): :class:`LlamaServerSettings` for the text model: 2 slots, 1024 context, metrics on,
  alias ``gemma-4-tiny``, 2 threads.
* ``llama_server`` (module): one started server with ``tiny_settings``.
* ``start_llama_server`` (function): factory ``start(settings) -> LlamaServer``; every server it started is
  stopped at teardown. Server logs go to the test's tmp_path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.engine.llama_server import LlamaServer, LlamaServerSettings

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
TINY_GGUF = DATA_DIR / "tiny-gemma4-f32.gguf"
TINY_MM_GGUF = DATA_DIR / "tiny-gemma4-mm-f32.gguf"
TINY_MMPROJ_GGUF = DATA_DIR / "mmproj-tiny-gemma4-mm-f32.gguf"
TINY_ALIAS = "gemma-4-tiny"

StartServer = Callable[[LlamaServerSettings], LlamaServer]


def _require(path: Path) -> Path:
    if not path.is_file():
        pytest.fail(f"{path} is missing; regenerate it with tests/engine/make_tiny_gemma4.sh --multimodal")
    return path


def _require_xllamacpp() -> None:
    pytest.importorskip("xllamacpp", reason="xllamacpp (the test extra) is not installed")


@pytest.fixture(scope="session")
def tiny_gguf() -> Path:
    return _require(TINY_GGUF)


@pytest.fixture(scope="session")
def tiny_mm_gguf() -> Path:
    return _require(TINY_MM_GGUF)


@pytest.fixture(scope="session")
def tiny_mmproj_gguf() -> Path:
    return _require(TINY_MMPROJ_GGUF)


@pytest.fixture(scope="session")
def tiny_settings(tiny_gguf: Path) -> LlamaServerSettings:
    return LlamaServerSettings(
        model_path=tiny_gguf,
        n_ctx=1024,
        n_parallel=2,
        metrics=True,
        alias=(TINY_ALIAS,),
        threads=2,
    )


def _report(srv: LlamaServer) -> None:
    print(
        f"\nllama server on {srv.base_url}: up in {srv.startup_seconds:.2f}s "
        f"(model load {srv.load_seconds:.2f}s, /health {srv.health_history})",
        file=sys.stderr,
    )


@pytest.fixture(scope="module")
def llama_server(tiny_settings: LlamaServerSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    _require_xllamacpp()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    srv = LlamaServer(tiny_settings, log_path=log).start()
    _report(srv)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def start_llama_server(tmp_path: Path) -> Iterator[StartServer]:
    _require_xllamacpp()
    started: list[LlamaServer] = []

    def start(settings: LlamaServerSettings) -> LlamaServer:
        srv = LlamaServer(settings, log_path=tmp_path / f"server-{len(started)}.log")
        started.append(srv)
        srv.start()
        _report(srv)
        return srv

    try:
        yield start
    finally:
        for srv in started:
            srv.stop()
