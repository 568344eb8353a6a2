"""engines/termination_log.py, run exactly as the vLLM container runs it (``python3 -c SOURCE vllm serve ...``):
it passes the engine's output through, and on a failure writes the lines holding the engine's error
texts to the termination log, so the diagnosis survives the API server's traceback that vLLM prints
after its root cause (the kubelet's log fallback keeps only the last 2048 bytes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.engines import engine
from gemma4_operator.engines.base import diagnose
from gemma4_operator.engines.vllm import ERROR_SIGNATURES
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.render.children import Owner, render_children
from tests.support import engine_errors

SPEC = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e4b"}, "engine": "vllm",
                                            "accelerator": {"type": "nvidia-l4"}})
PLAN = plan(SPEC, ClusterFacts(frozenset({"nvidia-l4"})))
# What vLLM's API server prints after the engine core's root cause: well over the kubelet's 2048 bytes.
API_SERVER_TRACEBACK = "".join(
    f'  File "/usr/local/lib/python3.12/site-packages/vllm/entrypoints/openai/api_server.py", line {n}, in run\n'
    "    await something_that_waits_for_the_engine(core_client, timeout=None)\n" for n in range(40)) + (
    "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}\n")


def container() -> dict[str, Any]:
    deployment = next(c for c in render_children(Owner("chat", "ml", ""), SPEC, PLAN) if c["kind"] == "Deployment")
    c: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return c


def run_wrapped(tmp_path: Path, child: str, **kwargs: Any) -> subprocess.Popen[str]:
    """The rendered command with a stand-in engine (a Python script) in place of `vllm serve`."""
    c = container()
    literals = next(e["value"] for e in c["env"] if e["name"] == "GEMMA4_ERROR_LITERALS")
    env = {**os.environ, "GEMMA4_ERROR_LITERALS": literals, "GEMMA4_TERMINATION_LOG": str(tmp_path / "termination")}
    python, dash_c, source = c["command"][:3]
    assert (python, dash_c) == ("python3", "-c")
    return subprocess.Popen([sys.executable, "-c", source, sys.executable, "-c", child], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def test_the_vllm_container_runs_vllm_serve_under_the_wrapper() -> None:
    c = container()
    assert c["command"][-2:] == ["vllm", "serve"] and c["args"][0] == "google/gemma-4-E4B-it"
    literals = next(e["value"] for e in c["env"] if e["name"] == "GEMMA4_ERROR_LITERALS").split("\n")
    assert set(literals) == {piece for sig in ERROR_SIGNATURES for piece in sig.literals}
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_a_failed_start_keeps_the_root_cause_that_the_log_tail_loses(tmp_path: Path) -> None:
    failure = "(EngineCore_DP0 pid=211) " + engine_errors.KV_CACHE.strip() + "\n" + API_SERVER_TRACEBACK
    child = f"import sys; sys.stdout.write({failure!r}); sys.exit(1)"
    proc = run_wrapped(tmp_path, child)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and out == failure  # the log is the engine's, unchanged
    assert diagnose(ERROR_SIGNATURES, out.encode()[-2048:].decode(errors="ignore"), PLAN) is None  # the kubelet's tail
    message = (tmp_path / "termination").read_text(encoding="utf-8")
    found = diagnose(engine("vllm").error_signatures(), message, PLAN)
    assert found is not None and found.reason == "KVCacheTooSmall" and "serving.maxModelLen" in found.message


def test_a_clean_exit_writes_no_termination_message(tmp_path: Path) -> None:
    proc = run_wrapped(tmp_path, "print('serving'); print('No available memory for the cache blocks. (a log line)')")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "serving" in out
    assert not (tmp_path / "termination").exists()


def test_sigterm_reaches_the_engine_for_its_own_graceful_shutdown(tmp_path: Path) -> None:
    child = ("import signal, sys, time\n"
             "signal.signal(signal.SIGTERM, lambda *_: (print('draining', flush=True), sys.exit(0)))\n"
             "print('ready', flush=True)\n"
             "time.sleep(60)\n")
    proc = run_wrapped(tmp_path, child)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "draining" in out and time.monotonic() - started < 20
