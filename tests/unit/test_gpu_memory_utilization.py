"""serving.gpuMemoryUtilization: vLLM's --gpu-memory-utilization, used by the fit and rendered; not llama.cpp's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import load_catalog
from gemma4_operator.engines import vllm
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError
from gemma4_operator.planner.select import plan

CATALOG = load_catalog()
EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
H100 = ClusterFacts(frozenset({"nvidia-h100-80gb"}))
# the recipe's 26B-A4B serve (vllm-project/recipes Google/Gemma4.md): one 80 GB GPU, 32K context
RECIPE_26B: dict[str, Any] = {"model": {"variant": "26b-a4b"}, "quantization": "bf16",
                              "accelerator": {"type": "nvidia-h100-80gb", "count": 1},
                              "serving": {"maxModelLen": 32768, "concurrency": 1}}


def _plan(fields: dict[str, Any], facts: ClusterFacts = H100) -> tuple[Plan, Gemma4DeploymentSpec]:
    spec = Gemma4DeploymentSpec.model_validate(fields)
    return plan(spec, facts, suggest=False), spec


def _with(utilization: float | None, **serving: Any) -> dict[str, Any]:
    extra = {} if utilization is None else {"gpuMemoryUtilization": utilization}
    return {**RECIPE_26B, "serving": {**RECIPE_26B["serving"], **serving, **extra}}


def _flag(p: Plan, spec: Gemma4DeploymentSpec) -> str:
    args = vllm.command_line(p, spec)
    return args[args.index("--gpu-memory-utilization") + 1]


def test_unset_is_the_catalog_default_and_rendered() -> None:
    p, spec = _plan(_with(None))
    assert p.gpu_memory_utilization == CATALOG.engines["vllm"].gpu_memory_utilization == 0.90
    assert _flag(p, spec) == "0.90"


def test_a_raised_value_is_rendered_and_the_fit_uses_it() -> None:
    default, _ = _plan(_with(None))
    raised, spec = _plan(_with(0.95))
    assert _flag(raised, spec) == "0.95"
    assert raised.gpu_memory_utilization == 0.95
    # the extra 5 % of an 80 GB card is KV pool: about 4 GiB more, so more sequences
    pool_gain = raised.memory.kv_cache - default.memory.kv_cache
    assert pool_gain == pytest.approx(0.05 * raised.accelerator.memory_gib, abs=0.1)
    assert raised.max_concurrency > default.max_concurrency


def test_a_lowered_value_can_make_a_plan_not_fit() -> None:
    # the default fits the recipe's load on one GPU; half the GPU does not hold 26B BF16 weights
    _plan(_with(None))
    with pytest.raises(PlanError, match=r"has 3\d\.\d GiB usable"):
        _plan(_with(0.5))


def test_a_llamacpp_plan_chosen_by_auto_says_it_ignores_the_setting() -> None:
    # a T4 runs no vLLM (compute capability 7.5): engine auto serves it with llama.cpp
    fields = {"model": {"variant": "e2b"}, "accelerator": {"type": "nvidia-t4"},
              "serving": {"maxModelLen": 8192, "gpuMemoryUtilization": 0.95}}
    p, _ = _plan(fields, ClusterFacts(frozenset({"nvidia-t4"})))
    assert p.engine == "llamacpp"
    assert "serving.gpuMemoryUtilization ignored: llamacpp has no such setting (it allocates what its context needs)" \
        in p.notes
    unset, _ = _plan({**fields, "serving": {"maxModelLen": 8192}}, ClusterFacts(frozenset({"nvidia-t4"})))
    assert not any("gpuMemoryUtilization" in n for n in unset.notes)
    assert unset.max_concurrency == p.max_concurrency  # the llama.cpp fit does not use it


def test_the_example_holds_on_one_gpu_only_with_the_raised_value() -> None:
    # manifests/examples/26b-a4b-h100-bf16-one-gpu.yaml: its comment's claim
    example = yaml.safe_load((EXAMPLES / "26b-a4b-h100-bf16-one-gpu.yaml").read_text(encoding="utf-8"))["spec"]
    raised, spec = _plan(example)
    assert (raised.gpus_per_replica, _flag(raised, spec)) == (1, "0.95")
    default = {**example, "serving": {k: v for k, v in example["serving"].items() if k != "gpuMemoryUtilization"}}
    assert _plan(default)[0].gpus_per_replica == 2



def test_the_fit_uses_the_fraction_vllm_is_given() -> None:
    # rendered to two decimals: 0.954 gives vLLM 0.95, so the fit must plan with 0.95, not 0.954
    p, spec = _plan(_with(0.954))
    assert (p.gpu_memory_utilization, _flag(p, spec)) == (0.95, "0.95")
    assert p.memory == _plan(_with(0.95))[0].memory
