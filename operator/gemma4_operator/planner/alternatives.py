"""Advice for a PlanError: the nearest single-field changes of the spec that would plan."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from gemma4_operator.api import Gemma4DeploymentSpec, KvCacheDtypeChoice, QuantizationChoice
from gemma4_operator.catalog import Catalog
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError


def _variations(spec: Gemma4DeploymentSpec, catalog: Catalog,
                memory_bound: bool) -> Iterator[tuple[str, Gemma4DeploymentSpec]]:
    """Single-field relaxations of the spec, most conservative first. Asking for less memory (an 8-bit
    KV cache, fewer sequences, a shorter context) only when something missed on memory: it cannot
    undo a refusal (a format the GPU does not run, an engine that does not run there)."""
    serving, accel = spec.serving, spec.accelerator

    def with_serving(**kw: object) -> Gemma4DeploymentSpec:
        return spec.model_copy(update={"serving": serving.model_copy(update=kw)})

    def with_accel(**kw: object) -> Gemma4DeploymentSpec:
        return spec.model_copy(update={"accelerator": accel.model_copy(update=kw)})

    if accel.count:
        yield "accelerator.count: 0 (let the planner choose)", with_accel(count=0)
    if spec.quantization is not QuantizationChoice.AUTO:
        yield "quantization: auto", spec.model_copy(update={"quantization": QuantizationChoice.AUTO})
    if memory_bound and serving.kv_cache_dtype is not KvCacheDtypeChoice.FP8:
        yield "serving.kvCacheDtype: fp8", with_serving(kv_cache_dtype=KvCacheDtypeChoice.FP8)
    for conc in (serving.concurrency // 2, serving.concurrency // 4, 1):
        if memory_bound and 1 <= conc < serving.concurrency:
            yield f"serving.concurrency: {conc}", with_serving(concurrency=conc)
    length = serving.max_model_len // 2
    while memory_bound and length >= 4096:
        yield f"serving.maxModelLen: {length}", with_serving(max_model_len=length)
        length //= 2
    if accel.type != "auto":
        for name in catalog.gpu_types:
            if name != accel.type:
                yield f"accelerator.type: {name}", with_accel(type=name, count=0)


def nearest_alternatives(spec: Gemma4DeploymentSpec, facts: ClusterFacts, catalog: Catalog,
                         planner: Callable[[Gemma4DeploymentSpec, ClusterFacts, Catalog], Plan],
                         *, memory_bound: bool, limit: int = 3) -> list[str]:
    """Up to ``limit`` single-field changes of the spec that ``planner`` can plan, as advice;
    ``memory_bound``: some candidate missed on memory (not only refusals)."""
    found: list[str] = []
    seen_accelerator_switch = False
    for label, variant_spec in _variations(spec, catalog, memory_bound):
        if label.startswith("accelerator.type") and seen_accelerator_switch:
            continue
        try:
            p = planner(variant_spec, facts, catalog)
        except (PlanError, ValueError):
            continue
        found.append(f"{label} -> {p.quantization} on {p.gpu_label} (maxConcurrency {p.max_concurrency})")
        seen_accelerator_switch |= label.startswith("accelerator.type")
        if len(found) >= limit:
            break
    return found
