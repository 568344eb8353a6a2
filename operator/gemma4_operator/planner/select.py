"""The planner's entry point: spec + cluster facts -> a serving Plan, or a PlanError that explains itself.

Pure: no Kubernetes calls, no I/O beyond the (cached) catalog. Structured like a runtime selector:
candidates are fetched (accelerators, engines and formats, GPU counts, KV precisions), each is matched
(checkpoint, catalog rules) and fitted (its engine's memory model) on the fewest GPUs that hold it,
and the fits are scored: the cheapest plan that keeps quality (see :func:`rank`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import Accelerator, Catalog, load_catalog
from gemma4_operator.engines import registry
from gemma4_operator.engines.base import Engine, MemoryFit, Shortfall
from gemma4_operator.planner import candidates, lora, speculative
from gemma4_operator.planner.alternatives import nearest_alternatives
from gemma4_operator.planner.assemble import Choice, assemble
from gemma4_operator.planner.lora import AdapterFacts, LoraSlots
from gemma4_operator.planner.plan import Candidate, ClusterFacts, Plan, PlanError, Rejection
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

    decisions: dict[str, speculative.Decision] = field(default_factory=dict)  # per engine: the same for every candidate

    def price(self, accel: Accelerator) -> float:
        return self.prices.get(accel.name, self.catalog.price(accel.name))

    def drafting(self, engine: Engine) -> speculative.Decision:
        """serving.speculativeDecoding's decision before memory (planner/speculative.py), once per engine."""
        if engine.name not in self.decisions:
            self.decisions[engine.name] = speculative.decide(self.spec, engine.name, engine.info.version, self.source,
                                                             self.catalog)
        return self.decisions[engine.name]


def _fit(s: _Search, prepared: candidates.Prepared, gpus: int, kv_dtype: str) -> Choice | Rejection:
    matched = candidates.match(prepared, gpus, kv_dtype, s.catalog)
    if isinstance(matched, Rejection):
        return matched
    if s.lora is not None:
        matched = replace(matched, lora=s.lora)
    engine, fmt, accel = prepared.engine, prepared.fmt, prepared.accel
    fitted = _fit_speculative(s, matched, engine)
    if isinstance(fitted, Rejection):
        return fitted
    matched, result, note = fitted
    native = s.catalog.formats[fmt].native_on(accel)
    return Choice(matched, result, engine, speculative_note=note, cost=s.price(accel) * max(gpus, 1),
                  below_floor=s.catalog.below_floor(fmt), native=native,
                  preference=(s.allowed.index(engine), engine.info.auto_formats.index(fmt)
                              if fmt in engine.info.auto_formats else len(engine.info.auto_formats)))


def _fit_speculative(s: _Search, matched: Candidate, engine: Engine) -> tuple[Candidate, MemoryFit, str] | Rejection:
    """The candidate fitted with its drafter (serving.speculativeDecoding), or without one where mode auto
    finds it does not fit, and the plan note that says which and why (planner/speculative.py decides, the
    engine fits)."""
    decision = s.drafting(engine)
    if decision.refusal is not None:
        return matched.reject(decision.refusal)
    fit = engine.fit(matched) if decision.drafter is None or speculative.falls_back(s.spec) else None
    # auto: what does not fit without the drafter does not fit with it either
    if decision.drafter is not None and not isinstance(fit, Shortfall):
        drafted = replace(matched, drafter=decision.drafter, speculative_tokens=decision.tokens)
        result = engine.fit(drafted)
        if not isinstance(result, Shortfall):
            # mode auto plans larger loads without the drafter: the largest concurrency it accepts is the plain fit's
            most = fit.max_concurrency if isinstance(fit, MemoryFit) else result.max_concurrency
            note = speculative.on_note(s.spec, decision, matched.gpus, (result.max_concurrency, most), s.catalog)
            return drafted, replace(result, max_concurrency=most), note
        decision = speculative.without_memory(s.spec, decision, result.reason)
        if decision.refusal is not None:
            return matched.reject(decision.refusal, result.shortfall_gib)
    assert fit is not None, "mode auto fits the candidate without a drafter too"
    if isinstance(fit, Shortfall):
        return matched.reject(fit.reason, fit.shortfall_gib)
    return matched, fit, decision.note


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
