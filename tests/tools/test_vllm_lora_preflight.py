"""vLLM 0.32's own adapter validation (PEFTHelper.validate_legal and the module check of
LoRAModel.from_local_checkpoint, tests/tools/vllm_lora_check.py) agrees with our preflight (weights/preflight.py)
on every recipe-shaped adapter of tests/support/adapter_recipes.py: what vLLM refuses, we refuse for the same
rule. Where we refuse what vLLM would load (another base's adapter; vision-tower targets, which vLLM silently
leaves out without --enable-tower-connector-lora), the recipe says so and vLLM's loader indeed accepts it."""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path

import pytest

from gemma4_operator.catalog import load_catalog
from gemma4_operator.weights.preflight import AdapterRules, check_adapter
from tests.support.adapter_recipes import RECIPES, Recipe, write_adapter
from tests.tools.vllm_parser import ensure_vllm_venv

pytestmark = pytest.mark.slow
CHECKER = Path(__file__).with_name("vllm_lora_check.py")
# Our reasons for vLLM's own rules (peft_helper.py _validate_features and validate_legal; lora_model.py's
# unexpected modules); the others (BaseMismatch, tower targets) are ours alone.
VLLM_RULES = {"ModulesToSave", "DoRA", "Bias", "Init", "Unsupported", "RankTooHigh", "InvalidConfig",
              "UnmappedModules"}
# vLLM's words for the rule each of our reasons stands for (peft_helper.py, lora_model.py)
VLLM_WORDS = {"ModulesToSave": "Unsupported modules_to_save", "DoRA": "does not yet support DoRA",
              "RankTooHigh": "is greater than max_lora_rank", "UnmappedModules": "expected target modules in"}


@cache
def vllm_verdicts(root: Path) -> dict[str, dict[str, object]]:
    requests = [{"dir": str(write_adapter(r, root / r.name)), "max_rank": r.max_rank} for r in RECIPES]
    proc = subprocess.run([str(ensure_vllm_venv()), str(CHECKER)], input=json.dumps(requests), text=True,
                          capture_output=True, timeout=600, check=False,
                          env={**os.environ, "VLLM_TARGET_DEVICE": "cpu"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return dict(zip([r.name for r in RECIPES], json.loads(proc.stdout), strict=True))


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, object]]:
    return vllm_verdicts(tmp_path_factory.mktemp("adapters"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_vllm_s_own_validator_agrees_with_the_preflight(recipe: Recipe, verdicts: dict[str, dict[str, object]]
                                                        ) -> None:
    theirs = verdicts[recipe.name]
    ours = check_adapter(recipe.name, recipe.files(), load_catalog().variants[recipe.variant],
                         AdapterRules(max_rank=recipe.max_rank))
    assert theirs["ok"] is not recipe.vllm_refuses, theirs["error"]
    if recipe.vllm_refuses:
        assert ours.reason in VLLM_RULES and VLLM_WORDS[ours.reason] in str(theirs["error"]), (ours.reason,
                                                                                              theirs["error"])
    else:
        assert ours.reason == recipe.expected and (ours.accepted or ours.reason not in VLLM_RULES), ours.message
