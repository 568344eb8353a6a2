"""status.plan.maxConcurrency is exactly the largest serving.concurrency the planner accepts on the same hardware.

For every variant x accelerator type in the catalog (and cpu): plan the smallest load, pin what the plan chose
(engine, format, accelerator, GPU count, KV precision), then plan again at concurrency = maxConcurrency (accepted,
reporting the same maxConcurrency) and at maxConcurrency + 1 (refused). The API caps concurrency at 1024, so a
maxConcurrency above that is checked at 1024 only.
"""

from __future__ import annotations

from typing import Any

import pytest

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import load_catalog
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError
from gemma4_operator.planner.select import plan

CATALOG = load_catalog()
FACTS = ClusterFacts.every_catalog_type(CATALOG)
MAX_API_CONCURRENCY = 1024  # ServingSpec.concurrency's schema maximum
PAIRS = [(v, a) for v in CATALOG.variants for a in ("cpu", *CATALOG.gpu_types)]


def _plan(fields: dict[str, Any]) -> Plan:
    return plan(Gemma4DeploymentSpec.model_validate(fields), FACTS, CATALOG, suggest=False)


def _fits(variant: str, accelerator: str) -> bool:
    try:
        _plan({"model": {"variant": variant}, "accelerator": {"type": accelerator},
               "serving": {"concurrency": 1, "maxModelLen": 8192}})
    except PlanError:
        return False
    return True


# The pairs where the smallest load plans at all (a variant too big for a GPU type has no maxConcurrency).
CASES = [(v, a) for v, a in PAIRS if _fits(v, a)]


def _pinned(p: Plan, variant: str, concurrency: int) -> dict[str, Any]:
    accelerator: dict[str, Any] = {"type": p.accelerator.name}
    if p.accelerator.is_gpu:
        accelerator["count"] = p.gpus_per_replica
    return {"model": {"variant": variant}, "engine": p.engine, "quantization": p.quantization,
            "accelerator": accelerator, "serving": {"concurrency": concurrency, "maxModelLen": 8192,
                                                    "kvCacheDtype": p.kv_cache_dtype}}


@pytest.mark.parametrize(("variant", "accelerator"), CASES, ids=[f"{v}-{a}" for v, a in CASES])
def test_max_concurrency_is_the_largest_accepted_concurrency(variant: str, accelerator: str) -> None:
    first = _plan({"model": {"variant": variant}, "accelerator": {"type": accelerator},
                   "serving": {"concurrency": 1, "maxModelLen": 8192}})
    most = first.max_concurrency
    assert most >= 1
    at_most = _plan(_pinned(first, variant, min(most, MAX_API_CONCURRENCY)))
    assert at_most.max_concurrency == most
    assert (at_most.gpus_per_replica, at_most.quantization, at_most.kv_cache_dtype) == (
        first.gpus_per_replica, first.quantization, first.kv_cache_dtype)
    if at_most.accelerator.is_gpu:  # and the plan at maxConcurrency keeps the engine's start-up margin spare
        margin = CATALOG.engines[at_most.engine].startup_margin_gib
        usable = at_most.accelerator.memory_gib * at_most.gpu_memory_utilization
        assert at_most.memory_needed_gib + margin <= usable + 1e-9
    if most < MAX_API_CONCURRENCY:
        with pytest.raises(PlanError):
            _plan(_pinned(first, variant, most + 1))


def test_every_accelerator_plans_some_variant() -> None:
    """The matrix above leaves out only what does not fit: every GPU type holds at least one variant, and most
    pairs are in it."""
    assert {a for _, a in CASES} == {"cpu", *CATALOG.gpu_types}
    assert len(CASES) >= 0.9 * len(PAIRS)
