"""The planner's entry point: spec + cluster facts -> a serving Plan, or a PlanError that explains itself.

Pure: no Kubernetes calls, no I/O beyond the (cached) catalog. Structured like a runtime selector:
candidates are fetched (accelerators, engines and formats, GPU counts, KV precisions), each is matched
(checkpoint, catalog rules) and fitted (its engine's memory model) on the fewest GPUs that hold it,
and the fits are scored: the cheapest plan that keeps quality (see :func:`rank`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import Accelerator, Catalog, load_catalog
from gemma4_operator.engines import registry
from gemma4_operator.engines.base import Engine, MemoryFit, Shortfall
from gemma4_operator.planner import candidates, lora
from gemma4_operator.planner.alternatives import nearest_alternatives
from gemma4_operator.planner.assemble import Choice, assemble
from gemma4_operator.planner.lora import AdapterFacts, LoraSlots
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError, Rejection
from gemma4_operator.planner.sources import SourceRef, custom, parse_source


@dataclass(frozen=True)
class _Search:
    """What every candidate of one plan() call shares."""

    spec: Gemma4DeploymentSpec
    source: SourceRef | None
    catalog: Catalog
    allowed: list[Engine]
    prices: Mapping[str, float]
    lora: LoraSlots | None

    def price(self, accel: Accelerator) -> float:
        return self.prices.get(accel.name, self.catalog.price(accel.name))


def _fit(s: _Search, prepared: candidates.Prepared, gpus: int, kv_dtype: str) -> Choice | Rejection:
    matched = candidates.match(prepared, gpus, kv_dtype, s.catalog)
    if isinstance(matched, Rejection):
        return matched
    if s.lora is not None:
        matched = replace(matched, lora=s.lora)
    engine, fmt, accel = prepared.engine, prepared.fmt, prepared.accel
    result: MemoryFit | Shortfall = engine.fit(matched)
    if isinstance(result, Shortfall):
        return matched.reject(result.reason, result.shortfall_gib)
    native = s.catalog.formats[fmt].native_on(accel)
    return Choice(matched, result, engine, cost=s.price(accel) * max(gpus, 1),
                  below_floor=s.catalog.below_floor(fmt), native=native,
                  preference=(s.allowed.index(engine), engine.info.auto_formats.index(fmt)
                              if fmt in engine.info.auto_formats else len(engine.info.auto_formats)))


def _on_gpus(s: _Search, prepared: candidates.Prepared, gpus: int) -> Choice | Rejection:
    """The candidate on this many GPUs, trying the KV precisions in the engine's order."""
    result: Choice | Rejection | None = None
    for kv_dtype in candidates.kv_dtypes(s.spec, prepared.accel, prepared.engine, s.catalog):
        result = _fit(s, prepared, gpus, kv_dtype)
        if isinstance(result, Choice):
            return result
    assert result is not None, "every engine offers a KV precision"
    return result


def _fewest_gpus(s: _Search, accel: Accelerator, engine: Engine, fmt: str) -> Choice | Rejection:
    """The format on the fewest GPUs that hold it. Memory per GPU only falls as GPUs are added, so
    after the fewest fail, the most are tried next: if they fail on memory, nothing in between fits
    (the common case when a format is too big). A refusal that is not about memory ends the search:
    more GPUs will not help."""
    prepared = candidates.prepare(s.spec, accel, engine, fmt, s.source, s.catalog)
    counts = candidates.gpu_counts(s.spec, accel, engine, s.catalog)
    first = _on_gpus(s, prepared, counts[0])
    if isinstance(first, Choice) or first.shortfall_gib == 0.0 or len(counts) == 1:
        return first
    most = _on_gpus(s, prepared, counts[-1])
    if isinstance(most, Rejection) and most.shortfall_gib > 0.0:
        return most
    for gpus in counts[1:-1]:
        result = _on_gpus(s, prepared, gpus)
        if isinstance(result, Choice) or result.shortfall_gib == 0.0:
            return result
    return most


def _choices_on(s: _Search, accel: Accelerator, rejections: list[Rejection]) -> list[Choice]:
    pairs = candidates.engine_formats(s.spec, accel, s.source, s.catalog, s.allowed)
    if not pairs:
        rejections += candidates.engine_refusals(s.spec, accel, s.allowed, s.source)
    found: list[Choice] = []
    for engine, fmt in pairs:
        result = _fewest_gpus(s, accel, engine, fmt)
        if isinstance(result, Choice):
            found.append(result)
        else:
            rejections.append(result)
    return found


def rank(c: Choice) -> tuple[bool, float, bool, tuple[int, int], int, float, str]:
    """Best first: at the quality floor before below it; the lowest hourly cost per replica; a format
    the hardware computes in natively (not FP8 through Marlin on Ampere); the engine's own preference
    (its catalog order: NVFP4 before FP8 before BF16 where all are native); then the most KV headroom;
    then the smallest GPU."""
    accel = c.candidate.accelerator
    return (c.below_floor, round(c.cost, 6), not c.native, c.preference, -c.memory.max_concurrency,
            accel.memory_gib, accel.name)


def plan(spec: Gemma4DeploymentSpec, facts: ClusterFacts, catalog: Catalog | None = None, *,
         images: Mapping[str, str] | None = None, prices: Mapping[str, float] | None = None,
         suggest: bool = True, adapters: AdapterFacts | None = None) -> Plan:
    """Plan one replica. ``images`` are operator-wide image overrides by engine image key (a spec's
    serving.image wins over them), ``prices`` USD per GPU-hour by accelerator type instead of the
    catalog's, ``adapters`` what the adapters' preflight read (ranks, tower targets). Raises PlanError (never
    anything else for a schema-valid spec)."""
    catalog = catalog or load_catalog()
    source = parse_source(spec.model.source.uri) if spec.model.source else None
    s = _Search(spec, custom(source), catalog, candidates.allowed_engines(spec, registry(catalog)), prices or {},
                lora.resolve(spec, adapters or AdapterFacts()))
    rejections: list[Rejection] = []
    accelerators = candidates.accelerators(spec, facts, catalog)
    found = sorted((c for accel in accelerators for c in _choices_on(s, accel, rejections)), key=rank)
    if not found:
        label = f"gemma-4-{spec.model.variant.value}"
        where = spec.accelerator.type if spec.accelerator.type != "auto" else (
            "any accelerator type present" if accelerators[0].is_gpu else "cpu (no GPU types present)")
        alternatives = nearest_alternatives(
            spec, facts, catalog, lambda sp, f, c: plan(sp, f, c, prices=prices, suggest=False, adapters=adapters),
            memory_bound=any(r.shortfall_gib > 0 for r in rejections)) if suggest else []
        raise PlanError(f"{label} does not fit on {where}", _closest_first(rejections), alternatives)
    return assemble(spec, found[0], found[1:], source, catalog, chose_accelerator=len(accelerators) > 1,
                    images=images or {})


def _closest_first(rejections: Iterable[Rejection]) -> list[Rejection]:
    # Memory misses first, smallest shortfall first; then the hard refusals.
    return sorted(rejections, key=lambda r: (r.shortfall_gib == 0.0, r.shortfall_gib))
