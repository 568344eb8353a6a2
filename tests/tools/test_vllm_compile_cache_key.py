"""The shared compile cache (engines/vllm.py COMPILE_CACHE_DIR) against vLLM 0.32.0 itself, in the tools-tier venv:
the environment part of the compile cache key (vllm/envs.py compile_factors, hashed by vllm/compilation/caching.py
aot_compile_hash_factors and backends.py) is the same whether the cache lives in the pod's HOME or on the shared
volume, so moving it there loses no hit, while a VLLM_* setting that changes the graphs changes the key (the test
could fail); and vLLM 0.32.0 takes the AOT path by default (use_aot_compile), whose directory the README names."""

from __future__ import annotations

import json
import subprocess

import pytest

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.engines.base import HOME_DIR
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.render.children import Owner, render_children
from tests.tools.vllm_parser import ensure_vllm_venv

pytestmark = pytest.mark.slow

PROBE = """
import json, sys
import vllm.envs as envs
from vllm.config.utils import hash_factors
print(json.dumps({"hash": hash_factors(envs.compile_factors()), "aot": envs.use_aot_compile()}))
"""


def rendered_env() -> dict[str, str]:
    """The literal env of the serving container for an E4B plan with a model cache."""
    spec = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"},
                                                "engine": "vllm", "storage": {"modelCache": {
                                                    "accessModes": ["ReadWriteMany"]}}})
    objs = render_children(Owner("chat", "ml", "0b7d3c1e-1111-4a5b-9c9d-123456789abc"), spec,
                           plan(spec, ClusterFacts.every_catalog_type()))
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def key(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run([str(ensure_vllm_venv()), "-c", PROBE], check=True, capture_output=True, text=True,
                         timeout=120, env={"VLLM_TARGET_DEVICE": "cpu", "PATH": "/usr/bin:/bin", **env}).stdout
    facts: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return facts


def test_the_shared_cache_path_is_not_part_of_the_key_and_the_aot_path_is_taken() -> None:
    env = rendered_env()
    assert env["VLLM_CACHE_ROOT"] == "/var/cache/vllm"
    shared = key(env)
    per_pod = key({**env, "VLLM_CACHE_ROOT": f"{HOME_DIR}/.cache/vllm", "TRITON_CACHE_DIR": f"{HOME_DIR}/.cache/t"})
    assert shared["hash"] == per_pod["hash"]
    assert shared["aot"] is True  # torch_compile_cache/torch_aot_compile/{hash} under VLLM_CACHE_ROOT
    assert key({**env, "VLLM_USE_AOT_COMPILE": "0"})["hash"] != shared["hash"]  # a graph setting is in the key
