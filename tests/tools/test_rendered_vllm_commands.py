"""Every vLLM command line we render parses with vLLM 0.32.0's own argument parser.

Covers every example and every vLLM plan of the catalog matrix (variant x GPU type x format x a
few serving shapes), checked in one batch. Slow on first use: builds the vLLM venv (~2-4 min).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from gemma4_operator.api import Gemma4Deployment, Gemma4DeploymentSpec
from gemma4_operator.catalog import load_catalog
from gemma4_operator.engines import vllm
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError
from gemma4_operator.planner.select import plan
from tests.tools.vllm_parser import check_vllm_command_lines

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
    return found


def test_every_rendered_vllm_command_line_parses() -> None:
    plans = _vllm_plans()
    argvs = {("vllm", "serve", *vllm.command_line(p, spec)): name for name, spec, p in plans}
    assert len(argvs) > 100, "the matrix should produce many distinct command lines"
    results = check_vllm_command_lines([list(a) for a in argvs])
    failures = [f"{argvs[r.argv]}: {r.error}" for r in results if not r.ok]
    assert failures == []
    for r in results:  # the parser read back what the planner meant
        assert r.parsed["max_model_len"] == int(r.argv[r.argv.index("--max-model-len") + 1])
        assert r.parsed["tensor_parallel_size"] == int(r.argv[r.argv.index("--tensor-parallel-size") + 1])
        assert r.parsed["served_model_name"] is not None


def test_parser_rejects_what_a_typo_in_the_renderer_would_produce() -> None:
    name, spec, p = _vllm_plans()[0]
    argv = ["vllm", "serve", *vllm.command_line(p, spec)]
    broken = [a.replace("--max-model-len", "--max-model-length") for a in argv]
    result, = check_vllm_command_lines([broken])
    assert not result.ok and "--max-model-length" in (result.error or ""), name
