"""The vLLM facts behind serving.apiKeySecretRef and the non-root pod (catalog engines.yaml `api_key`,
engines/vllm.py NON_ROOT_ENV) against vLLM 0.32.0 itself, in the tools-tier venv: vLLM reads the key from the
variable the catalog names, its middleware guards none of the paths the catalog calls open (the probes' and the
autoscaler's), and it reads the cache variable the operator sets (the compile cache, engines/vllm.py)."""

from __future__ import annotations

import json
import subprocess

import pytest

from gemma4_operator.catalog import load_catalog
from gemma4_operator.engines.vllm import NON_ROOT_ENV
from tests.tools.vllm_parser import ensure_vllm_venv

pytestmark = pytest.mark.slow

PROBE = """
import json
import vllm.envs as envs
from vllm.entrypoints.serve.middleware.authenticate import GUARDED_PREFIX
print(json.dumps({"env": sorted(envs.environment_variables), "guarded": list(GUARDED_PREFIX)}))
"""


def vllm_facts() -> dict[str, list[str]]:
    out = subprocess.run([str(ensure_vllm_venv()), "-c", PROBE], check=True, capture_output=True, text=True,
                         timeout=120, env={"VLLM_TARGET_DEVICE": "cpu", "PATH": "/usr/bin:/bin"}).stdout
    facts: dict[str, list[str]] = json.loads(out.strip().splitlines()[-1])
    return facts


def test_vllm_reads_the_key_and_guards_none_of_the_open_paths() -> None:
    info = load_catalog().engines["vllm"].api_key
    facts = vllm_facts()
    assert info.env in facts["env"]
    assert facts["guarded"] and all(not path.startswith(tuple(facts["guarded"])) for path in info.open_paths)
    assert load_catalog().engines["vllm"].readiness_path.startswith(tuple(facts["guarded"]))  # why probes switch


def test_vllm_reads_the_cache_variable_the_operator_sets() -> None:
    names = {e["name"] for e in NON_ROOT_ENV}
    assert "VLLM_CACHE_ROOT" in names and "VLLM_CACHE_ROOT" in vllm_facts()["env"]
