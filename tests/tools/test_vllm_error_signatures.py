"""vLLM's error signatures (engines/vllm.py) against vLLM 0.32.0's real text, in the tools-tier venv that holds
vLLM's sources (tests/tools/vllm_venv.sh, cached under $GEMMA4_TOOLS_CACHE).

- every literal of every signature occurs in one string of the installed sources (vLLM's own, or
  huggingface_hub's for the repository errors vLLM's downloads raise), so a reworded upstream message fails here;
- the KV-cache check (vllm/v1/core/kv_cache_utils.py _check_enough_kv_cache_memory) is run for real and
  its messages are diagnosed as KVCacheTooSmall naming serving.maxModelLen and vLLM's estimate.
"""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path

import pytest

from gemma4_operator.engines import engine
from gemma4_operator.engines.base import ErrorSignature, diagnose
from gemma4_operator.engines.vllm import ERROR_SIGNATURES
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from tests.tools.vllm_parser import ensure_vllm_venv
from tests.unit.test_diagnosis import spec

pytestmark = pytest.mark.slow

# Reasons whose text comes from vLLM's dependency huggingface_hub (raised through vLLM's model download).
FROM_HUB = {"GatedRepository", "RepositoryNotFound"}


@cache
def package_dir(package: str) -> Path:
    python = ensure_vllm_venv()
    out = subprocess.run([str(python), "-c", f"import importlib.util as u; print(u.find_spec({package!r}).origin)"],
                         check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    return Path(out).parent


@cache
def sources(package: str) -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8", errors="replace") for p in package_dir(package).rglob("*.py")}


def where(literal: str, package: str) -> list[str]:
    return [str(p.relative_to(package_dir(package).parent)) for p, text in sources(package).items() if literal in text]


def test_the_venv_is_vllm_0_32_0() -> None:
    out = subprocess.run([str(ensure_vllm_venv()), "-c", "import importlib.metadata as m; print(m.version('vllm'))"],
                         check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    assert out == "0.32.0"


@pytest.mark.parametrize("sig", ERROR_SIGNATURES, ids=[f"{i}-{s.reason}" for i, s in enumerate(ERROR_SIGNATURES)])
def test_signature_literals_occur_in_the_installed_sources(sig: ErrorSignature) -> None:
    package = "huggingface_hub" if sig.reason in FROM_HUB else "vllm"
    for literal in sig.literals:
        assert where(literal, package), f"{sig.reason}: {literal!r} is not in the installed {package} sources"


def test_where_each_signature_comes_from() -> None:
    """The evidence, printed with -s: each literal and the files that hold it."""
    for sig in ERROR_SIGNATURES:
        package = "huggingface_hub" if sig.reason in FROM_HUB else "vllm"
        for literal in sig.literals:
            found = where(literal, package)
            print(f"{sig.reason}: {literal!r} in {found[:3]}")
            assert found


_RUN_CHECK = """
import json
from vllm.v1.core.kv_cache_utils import _check_enough_kv_cache_memory as check
G = 1 << 30
out = []
for available, estimate in ((int(3.71 * G), 38896), (int(3.71 * G), 0), (0, 0)):
    try:
        check(available, lambda: int(12.5 * G), 131072, lambda m: estimate)
    except ValueError as e:
        out.append(str(e))
print(json.dumps(out))
"""


def test_vllm_kv_cache_check_messages_are_diagnosed() -> None:
    python = ensure_vllm_venv()
    proc = subprocess.run([str(python), "-c", _RUN_CHECK], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    messages = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(messages) == 3
    p = plan(spec(engine="vllm"), ClusterFacts(frozenset({"nvidia-l4"})))
    signatures = engine("vllm").error_signatures()
    found = [diagnose(signatures, f"(EngineCore pid=1) ValueError: {m}\n", p) for m in messages]
    assert all(f is not None and f.reason == "KVCacheTooSmall" for f in found)
    with_estimate, without, nothing = (f.message for f in found if f is not None)
    assert "lower serving.maxModelLen to 38896 or less" in with_estimate and "3.71 GiB" in with_estimate
    assert "serving.maxModelLen 131072" in without and "38896" not in without
    assert "no GPU memory left for the KV cache" in nothing
