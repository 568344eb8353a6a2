"""llama.cpp's start-up failures, produced by the real llama-server (xllamacpp), diagnosed by the llama.cpp
engine's error signatures (engines/llamacpp.py) from what the kubelet would keep as the termination message
(``FallbackToLogsOnError``: the last 80 lines, at most 2048 bytes, of the log)."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest

from gemma4_operator.engines import engine
from gemma4_operator.engines.base import Diagnosis, diagnose
from tests.engine.llama_server import LlamaServer, LlamaServerError, LlamaServerSettings
from tests.unit.test_diagnosis import llamacpp_plan

pytestmark = [pytest.mark.engine, pytest.mark.slow]

_LLAMA_LINE = re.compile(r"^\d+\.\d+\.\d+\.\d+ [IWE] ")  # llama.cpp's own log lines (not the test harness')
KV_BYTES_PER_CELL_F32 = 256  # the tiny GGUF's K+V bytes per context cell with f32 cache types (measured)


def termination_message(log: str) -> str:
    """The kubelet's FallbackToLogsOnError: the log's last 80 lines, cut to its last 2048 bytes."""
    lines = [line for line in log.splitlines() if _LLAMA_LINE.match(line)]
    tail = "\n".join(lines[-80:]).encode()[-2048:]
    return tail.decode(errors="replace")


def fail_to_start(settings: LlamaServerSettings, log: Path) -> str:
    srv = LlamaServer(settings, log_path=log)
    with pytest.raises(LlamaServerError):
        srv.start()
    srv.stop()
    return termination_message(srv.log_text())


def diagnosed(message: str) -> Diagnosis:
    found = diagnose(engine("llamacpp").error_signatures(), message, llamacpp_plan())
    assert found is not None, message
    return found


def test_missing_model_file_is_model_load_failed(tiny_settings: LlamaServerSettings, tmp_path: Path) -> None:
    missing = tmp_path / "models" / "gemma-4-e2b-it-Q4_K_M.gguf"
    message = fail_to_start(dataclasses.replace(tiny_settings, model_path=str(missing)), tmp_path / "server.log")
    found = diagnosed(message)
    assert found.reason == "ModelLoadFailed"
    assert str(missing) in found.message and "No such file or directory" in found.message
    assert "model.source" in found.message


def test_corrupt_model_file_is_model_load_failed(tiny_settings: LlamaServerSettings, tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 60)
    found = diagnosed(fail_to_start(dataclasses.replace(tiny_settings, model_path=str(bad)), tmp_path / "server.log"))
    assert found.reason == "ModelLoadFailed" and "model.source" in found.message


def test_a_missing_adapter_file_is_adapter_load_failed(tiny_settings: LlamaServerSettings, tmp_path: Path) -> None:
    missing = tmp_path / "adapters" / "support" / "adapter.gguf"
    settings = dataclasses.replace(tiny_settings, lora=((missing, 0.0),))
    found = diagnosed(fail_to_start(settings, tmp_path / "server.log"))
    assert found.reason == "AdapterLoadFailed"
    assert str(missing) in found.message and "No such file or directory" in found.message


def test_a_gguf_that_is_no_adapter_is_adapter_load_failed(tiny_settings: LlamaServerSettings, tmp_path: Path,
                                                          tiny_mmproj_gguf: Path) -> None:
    settings = dataclasses.replace(tiny_settings, lora=((tiny_mmproj_gguf, 0.0),))
    found = diagnosed(fail_to_start(settings, tmp_path / "server.log"))
    assert found.reason == "AdapterLoadFailed" and "convert_lora_to_gguf.py" in found.message
    assert "general.type to be 'adapter'" in found.message


def _mem_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def test_context_that_cannot_be_allocated_is_kv_cache_too_small(tiny_settings: LlamaServerSettings,
                                                               tmp_path: Path) -> None:
    """A context whose KV cache needs twice the machine's memory: the kernel refuses the allocation at once
    (nothing is touched). fit_params off, or llama.cpp would shrink the context to fit."""
    cells = math.ceil(2 * _mem_total_bytes() / KV_BYTES_PER_CELL_F32 / 256) * 256
    settings = dataclasses.replace(tiny_settings, n_ctx=cells, n_parallel=1, cache_type_k="f32", cache_type_v="f32",
                                   extra={"fit_params": False})
    message = fail_to_start(settings, tmp_path / "server.log")
    found = diagnosed(message)
    assert found.reason == "KVCacheTooSmall", message
    assert "serving.maxModelLen" in found.message and "serving.concurrency" in found.message
    assert "failed to allocate buffer for kv cache" in found.evidence
