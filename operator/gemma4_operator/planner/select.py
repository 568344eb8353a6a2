"""The planner's entry point: spec + cluster facts -> a serving Plan, or a PlanError that explains itself.

Pure: no Kubernetes calls, no I/O beyond the (cached) catalog. Structured like a runtime selector:
candidates are fetched (accelerators, engines and formats, GPU counts), each is matched (checkpoint,
catalog rules) and fitted (its engine's memory model), and the fits are scored (fewest GPUs, then
least memory).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import Accelerator, Catalog, load_catalog
from gemma4_operator.engines import registry
from gemma4_operator.engines.base import Engine, MemoryFit, Shortfall
from gemma4_operator.planner import candidates
from gemma4_operator.planner.alternatives import nearest_alternatives
from gemma4_operator.planner.assemble import assemble
from gemma4_operator.planner.plan import Candidate, ClusterFacts, Plan, PlanError, Rejection
from gemma4_operator.planner.sources import SourceRef, parse_source


@dataclass(frozen=True)
class Fit:
    """A candidate and its engine's memory numbers."""

    candidate: Candidate
    memory: MemoryFit
    engine: Engine


def _fit(spec: Gemma4DeploymentSpec, accel: Accelerator, engine: Engine, fmt: str, gpus: int,
         source: SourceRef | None, catalog: Catalog) -> Fit | Rejection:
    matched = candidates.match(spec, accel, engine, fmt, gpus, source, catalog)
    if isinstance(matched, Rejection):
        return matched
    result = engine.fit(matched)
    if isinstance(result, Shortfall):
        return matched.reject(result.reason, result.shortfall_gib)
    return Fit(matched, result, engine)


def _fits_on(spec: Gemma4DeploymentSpec, accel: Accelerator, source: SourceRef | None, catalog: Catalog,
             allowed: list[Engine], rejections: list[Rejection]) -> Fit | None:
    """The first (engine, format) that fits, on the fewest GPUs."""
    pairs = candidates.engine_formats(spec, accel, source, catalog, allowed)
    if not pairs:
        rejections += candidates.engine_refusals(spec, accel, allowed)
    for engine, fmt in pairs:
        last: Rejection | None = None
        for gpus in candidates.gpu_counts(spec, accel, engine, catalog):
            result = _fit(spec, accel, engine, fmt, gpus, source, catalog)
            if isinstance(result, Fit):
                return result
            last = result
            if result.shortfall_gib == 0.0:
                break  # not a memory problem: more GPUs will not help
        if last is not None:
            rejections.append(last)
    return None


def _score(fit: Fit) -> tuple[int, float, str]:
    accel = fit.candidate.accelerator
    return fit.candidate.gpus, accel.memory_gib, accel.name


def plan(spec: Gemma4DeploymentSpec, facts: ClusterFacts, catalog: Catalog | None = None, *,
         images: Mapping[str, str] | None = None, suggest: bool = True) -> Plan:
    """Plan one replica. ``images`` are operator-wide image overrides by engine image key (a spec's
    serving.image wins over them). Raises PlanError (never anything else for a schema-valid spec)."""
    catalog = catalog or load_catalog()
    source = parse_source(spec.model.source.uri) if spec.model.source else None
    allowed = candidates.allowed_engines(spec, registry(catalog))
    rejections: list[Rejection] = []
    accelerators = candidates.accelerators(spec, facts, catalog)
    fits = [f for accel in accelerators if (f := _fits_on(spec, accel, source, catalog, allowed, rejections))]
    if not fits:
        label = f"gemma-4-{spec.model.variant.value}"
        where = spec.accelerator.type if spec.accelerator.type != "auto" else (
            "any accelerator type present" if accelerators[0].is_gpu else "cpu (no GPU types present)")
        alternatives = nearest_alternatives(spec, facts, catalog, _plan_quietly) if suggest else []
        raise PlanError(f"{label} does not fit on {where}", _closest_first(rejections), alternatives)
    best = min(fits, key=_score)
    return assemble(spec, best.candidate, best.memory, best.engine, source,
                    chose_accelerator=len(accelerators) > 1, images=images or {})


def _plan_quietly(spec: Gemma4DeploymentSpec, facts: ClusterFacts, catalog: Catalog) -> Plan:
    return plan(spec, facts, catalog, suggest=False)


def _closest_first(rejections: Iterable[Rejection]) -> list[Rejection]:
    # Memory misses first, smallest shortfall first; then the hard refusals.
    return sorted(rejections, key=lambda r: (r.shortfall_gib == 0.0, r.shortfall_gib))
