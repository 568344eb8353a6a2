"""Every vLLM command line we render parses with vLLM 0.32.0's own argument parser, and vLLM reads back
every setting the plan meant.

Covers every example and every vLLM plan of the catalog matrix (variant x GPU type x format x a
few serving shapes, plus a pinned Hub revision), checked in one batch. Slow on first use: builds the vLLM
venv (~2-4 min).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gemma4_operator.api import Gemma4Deployment, Gemma4DeploymentSpec
from gemma4_operator.catalog import load_catalog
from gemma4_operator.engines import vllm
from gemma4_operator.planner.lora import AdapterFacts
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError
from gemma4_operator.planner.select import plan
from tests.tools.vllm_parser import VllmParseResult, check_vllm_command_lines

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FACTS = ClusterFacts.every_catalog_type()
SHAPES = (
    {"maxModelLen": 32768, "concurrency": 4},
    {"maxModelLen": 8192, "concurrency": 16, "modalities": ["text"]},
    {"maxModelLen": 131072, "concurrency": 1, "kvCacheDtype": "bf16", "modalities": ["text", "image", "audio"]},
)


def _vllm_plans() -> list[tuple[str, Gemma4DeploymentSpec, Plan]]:
    found: list[tuple[str, Gemma4DeploymentSpec, Plan]] = []
    for path in sorted((ROOT / "manifests" / "examples").glob("*.yaml")):
        d = Gemma4Deployment.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        p = plan(d.spec, FACTS)
        if p.engine == "vllm":
            found.append((path.stem, d.spec, p))
    catalog = load_catalog()
    for variant, accel, quant, it, shape in itertools.product(
            catalog.variants, catalog.gpu_types, ["auto", *catalog.formats], (True, False), SHAPES):
        try:
            spec = Gemma4DeploymentSpec.model_validate(
                {"model": {"variant": variant, "instructionTuned": it}, "accelerator": {"type": accel},
                 "quantization": quant, "engine": "vllm", "serving": shape})
            p = plan(spec, FACTS)
        except (ValidationError, PlanError):
            continue
        found.append((f"{variant}-{accel}-{quant}-{'it' if it else 'base'}", spec, p))
    found += _drafting_plans()
    pinned = Gemma4DeploymentSpec.model_validate(
        {"model": {"variant": "e4b", "source": {"uri": "hf://google/gemma-4-E4B-it@0123abcd"}}, "engine": "vllm",
         "accelerator": {"type": "nvidia-l4"}, "serving": {"maxModelLen": 8192, "concurrency": 2}})
    found.append(("e4b-pinned-revision", pinned, plan(pinned, FACTS)))
    return found + _lora_plans()


ADAPTERS = [{"name": "support", "uri": "hf://acme/gemma-4-support-lora"},
            {"name": "legal-v2", "uri": "pvc://loras/legal", "tokenSecretRef": {"name": "hf", "key": "token"}}]
LORA_SHAPES = ({},
               {"maxRank": 64, "maxActiveAdapters": 2, "cachedAdapters": 8, "targetModules": ["qkv_proj", "o_proj"]},
               {"maxRank": 320, "maxActiveAdapters": 1, "targetModules": ["q_proj", "v_proj", "down_proj"]})


def _lora_plans() -> list[tuple[str, Gemma4DeploymentSpec, Plan]]:
    """Every variant with adapters under each serving.lora shape, and one whose adapters target the towers."""
    found = []
    for variant, (i, lora) in itertools.product(load_catalog().variants, enumerate(LORA_SHAPES)):
        spec = Gemma4DeploymentSpec.model_validate(
            {"model": {"variant": variant, "adapters": ADAPTERS}, "engine": "vllm",
             "accelerator": {"type": "nvidia-h100-80gb"}, "serving": {"maxModelLen": 8192, "lora": lora}})
        found.append((f"{variant}-lora-{i}", spec, plan(spec, FACTS)))
    towers = Gemma4DeploymentSpec.model_validate(
        {"model": {"variant": "e4b", "adapters": ADAPTERS[:1]}, "engine": "vllm", "accelerator": {"type": "nvidia-l4"}})
    found.append(("e4b-lora-towers", towers, plan(towers, FACTS, adapters=AdapterFacts(ranks=(8,), towers=True))))
    return found


def _drafting_plans() -> list[tuple[str, Gemma4DeploymentSpec, Plan]]:
    """serving.speculativeDecoding beyond the matrix's default auto: forced with each token count the API takes at
    its ends, and a drafter loaded from the model cache (a local directory, not a Hub repository)."""
    found: list[tuple[str, Gemma4DeploymentSpec, Plan]] = []
    for variant, tokens, cache in itertools.product(load_catalog().variants, (1, 16, None), (False, True)):
        fields: dict[str, Any] = {
            "model": {"variant": variant}, "engine": "vllm", "accelerator": {"type": "nvidia-b200"},
            "serving": {"maxModelLen": 8192, "concurrency": 2,
                        "speculativeDecoding": {"mode": "mtp", **({"numSpeculativeTokens": tokens} if tokens else {})}}}
        if cache:
            fields["storage"] = {"modelCache": {"size": "200Gi", "accessModes": ["ReadWriteMany"]}}
        spec = Gemma4DeploymentSpec.model_validate(fields)
        found.append((f"{variant}-mtp-{tokens or 'recipe'}{'-cache' if cache else ''}", spec, plan(spec, FACTS)))
    return found


# What vLLM calls each setting of the plan (AsyncEngineArgs / the serve namespace), and the value it must read
# back; None: the plan leaves it at vLLM's default (read from a bare `vllm serve MODEL`).
def _expected(p: Plan) -> dict[str, Any]:
    modalities = {m: vllm.MM_LIMITS[m] for m in p.modalities if m in vllm.MM_LIMITS}
    return {
        "model": p.weights.directory if p.weights.local else p.weights.repo,
        "revision": (p.source.revision or None) if p.source is not None and not p.weights.local else None,
        "served_model_name": [p.served_model_name],
        "host": vllm.LISTEN_HOST,
        "port": p.port,
        "tensor_parallel_size": p.tensor_parallel_size,
        "max_model_len": p.max_model_len,
        "max_num_batched_tokens": p.max_num_batched_tokens,
        "gpu_memory_utilization": p.gpu_memory_utilization,
        "kv_cache_dtype": {"fp8": "fp8", "bf16": "auto"}[p.kv_cache_dtype],  # bf16 is the model's dtype: "auto"
        "quantization": p.quantization_flag,
        "enable_expert_parallel": p.expert_parallel or None,
        "language_model_only": p.text_only or None,
        "limit_mm_per_prompt": None if p.text_only else modalities,
        "reasoning_parser": "gemma4" if p.reasoning else None,
        "enable_auto_tool_choice": p.tool_calling or None,
        "tool_call_parser": "gemma4" if p.tool_calling else None,
        "speculative_config": vllm.speculative_config(p),
        **_expected_lora(p),
    }


def _expected_lora(p: Plan) -> dict[str, Any]:
    s = p.lora
    if s is None:
        return dict.fromkeys(("enable_lora", "max_loras", "max_lora_rank", "max_cpu_loras", "lora_target_modules",
                              "enable_tower_connector_lora", "lora_modules"))
    return {
        "enable_lora": True, "max_loras": s.active, "max_lora_rank": s.max_rank, "max_cpu_loras": s.cached,
        "lora_target_modules": list(s.target_modules) or None, "enable_tower_connector_lora": s.towers or None,
        "lora_modules": [{"name": name, "path": f"/models/adapters/{name}", "base_model_name": p.served_model_name,
                          "is_3d_lora_weight": False}
                         for name in s.adapters],
    }


def _read_back_errors(p: Plan, r: VllmParseResult, defaults: VllmParseResult) -> list[str]:
    """Settings vLLM parsed to something other than the plan's, and flags we set that nothing checks."""
    expected = _expected(p)
    errors = [f"{field}: vLLM read {r.parsed.get(field, '<absent>')!r}, the plan meant {want!r}"
              for field, value in expected.items()
              if r.parsed.get(field, "<absent>") != (want := defaults.parsed[field] if value is None else value)]
    unchecked = {"model" if dest == "model_tag" else dest for dest in r.non_default} - set(expected)
    return errors + [f"{dest}: set by the command line but not read back here" for dest in sorted(unchecked)]


def test_every_rendered_vllm_command_line_parses_and_reads_back_the_plan() -> None:
    plans = {("vllm", "serve", *vllm.command_line(p, spec)): (name, p) for name, spec, p in _vllm_plans()}
    assert len(plans) > 100, "the matrix should produce many distinct command lines"
    assert any(p.expert_parallel for _, p in plans.values()) and any(p.text_only for _, p in plans.values())
    assert any(p.source and p.source.revision for _, p in plans.values())
    assert sum(p.lora is not None for _, p in plans.values()) == 13
    drafted = [p for _, p in plans.values() if p.drafter is not None]
    assert {p.variant for p in drafted} == set(load_catalog().variants)
    assert {p.speculative_tokens for p in drafted} >= {1, 2, 4, 16} and any(p.weights.local for p in drafted)
    bare = ["vllm", "serve", "google/gemma-4-E4B-it"]
    defaults, *results = check_vllm_command_lines([bare, *(list(a) for a in plans)])
    failures = [f"{plans[r.argv][0]}: {r.error}" for r in results if not r.ok]
    assert failures == []
    assert defaults.ok and set(defaults.parsed) >= set(_expected(next(iter(plans.values()))[1])), defaults.parsed
    wrong = [f"{plans[r.argv][0]}: {e}" for r in results for e in _read_back_errors(plans[r.argv][1], r, defaults)]
    assert wrong == [], f"{len(wrong)} settings differ:\n" + "\n".join(wrong[:20])


def test_speculative_config_is_checked_against_vllms_own_fields() -> None:
    """A misspelt key, an unknown method or a token count vLLM's bounds refuse: each fails the check."""
    name, spec, p = next(found for found in _vllm_plans() if found[2].drafter is not None)
    argv = ["vllm", "serve", *vllm.command_line(p, spec)]
    at = argv.index("--speculative-config") + 1
    good = json.loads(argv[at])
    broken = [{**good, "method": "gemma4_assistant"}, {**good, "num_speculative_tokens": 0},
              {"modle" if k == "model" else k: v for k, v in good.items()}]
    results = check_vllm_command_lines([[*argv[:at], json.dumps(b), *argv[at + 1:]] for b in broken])
    assert [r.ok for r in results] == [False, False, False], name
    assert "method" in (results[0].error or "") and "num_speculative_tokens" in (results[1].error or "")
    assert "modle: not a SpeculativeConfig field" in (results[2].error or "")


def test_parser_rejects_what_a_typo_in_the_renderer_would_produce() -> None:
    name, spec, p = _vllm_plans()[0]
    argv = ["vllm", "serve", *vllm.command_line(p, spec)]
    broken = [a.replace("--max-model-len", "--max-model-length") for a in argv]
    result, = check_vllm_command_lines([broken])
    assert not result.ok and "--max-model-length" in (result.error or ""), name


def test_vllms_lora_config_refuses_what_a_wrong_lora_renderer_would_produce() -> None:
    """The checker runs vLLM's own LoRAConfig: an off-ladder rank, or fewer cached adapters than slots, fail."""
    name, spec, p = next(found for found in _lora_plans() if found[2].lora and found[2].lora.active == 2)
    argv = ["vllm", "serve", *vllm.command_line(p, spec)]

    def with_value(flag: str, value: str) -> list[str]:
        i = argv.index(flag)
        return [*argv[:i + 1], value, *argv[i + 2:]]

    rank, cached = check_vllm_command_lines([with_value("--max-lora-rank", "24"), with_value("--max-cpu-loras", "1")])
    assert not rank.ok and "24" in (rank.error or ""), name
    assert not cached.ok and "max_cpu_loras (1) must be >= max_loras (2)" in (cached.error or ""), name
