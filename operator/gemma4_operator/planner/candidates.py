"""Fetch and match: which (accelerator, engine, format, GPU count) candidates to try, and the checks a
candidate must pass before its engine is asked whether it fits in memory."""

from __future__ import annotations

from dataclasses import dataclass

from gemma4_operator.api import EngineChoice, Gemma4DeploymentSpec, QuantizationChoice
from gemma4_operator.catalog import Accelerator, Catalog, Checkpoint, FormatInfo, VariantInfo
from gemma4_operator.engines.base import Engine
from gemma4_operator.planner.plan import Candidate, ClusterFacts, PlanError, Rejection
from gemma4_operator.planner.sources import SourceRef


def accelerators(spec: Gemma4DeploymentSpec, facts: ClusterFacts, catalog: Catalog) -> list[Accelerator]:
    requested = spec.accelerator.type
    if requested != "auto":
        accel = catalog.accelerator(requested)
        if accel is None:
            known = ", ".join(["cpu", *catalog.gpu_types])
            raise PlanError(f"accelerator.type {requested!r} is not in the catalog (known: {known})", [])
        return [accel]
    gpus = [catalog.accelerators[t] for t in sorted(facts.accelerator_types) if t in catalog.accelerators]
    # CPU only when nothing else exists: a GPU cluster should not silently run a model on CPU.
    return gpus or [catalog.cpu]


def allowed_engines(spec: Gemma4DeploymentSpec, engines: dict[str, Engine]) -> list[Engine]:
    """The spec's engine, or every engine in the catalog's order for `engine: auto`."""
    if spec.engine is EngineChoice.AUTO:
        return list(engines.values())
    return [engines[spec.engine.value]]


def _runnable(allowed: list[Engine], accel: Accelerator, source: SourceRef | None) -> list[Engine]:
    return [e for e in allowed if e.refusal(accel) is None and e.source_refusal(source) is None]


def engine_formats(spec: Gemma4DeploymentSpec, accel: Accelerator, source: SourceRef | None, catalog: Catalog,
                   allowed: list[Engine]) -> list[tuple[Engine, str]]:
    """(engine, format) pairs to try on one accelerator, best first. An explicit format (or a GGUF
    source's) goes to the first engine that runs here and serves it; `auto` tries each runnable
    engine's native formats in turn, a format only with the first engine that offers it."""
    runnable = _runnable(allowed, accel, source)
    explicit = spec.quantization.value if spec.quantization is not QuantizationChoice.AUTO else (
        source.gguf_format if source is not None else None)
    if explicit is not None:
        serving = [e for e in runnable if e.name in catalog.formats[explicit].engines]
        # nothing serves it here: the first candidate engine, whose match says why not
        return [((serving or runnable or allowed)[0], explicit)]
    if source is not None:
        runnable = runnable[:1]  # a custom repository holds one kind of weights: its first engine's
    pairs: list[tuple[Engine, str]] = []
    seen: set[str] = set()
    for engine in runnable:
        for fmt in engine.auto_formats(accel, catalog):
            if fmt not in seen:
                pairs.append((engine, fmt))
                seen.add(fmt)
    return pairs


def engine_refusals(spec: Gemma4DeploymentSpec, accel: Accelerator, allowed: list[Engine],
                    source: SourceRef | None) -> list[Rejection]:
    """Why no allowed engine runs on this accelerator or loads this source (when engine_formats found nothing);
    an engine that runs here but cannot load the source first: that is the one thing to change."""
    here = [e.source_refusal(source) for e in allowed if e.refusal(accel) is None]
    elsewhere = [e.refusal(accel) for e in allowed]
    return [Rejection(accel.name, spec.quantization.value, 0, reason) for reason in (*here, *elsewhere) if reason]


def gpu_counts(spec: Gemma4DeploymentSpec, accel: Accelerator, engine: Engine, catalog: Catalog) -> list[int]:
    if not accel.is_gpu:
        return [0]
    if spec.accelerator.count:
        return [spec.accelerator.count]
    return engine.gpu_counts(catalog.variants[spec.model.variant.value], accel)


@dataclass(frozen=True)
class Prepared:
    """What holds for an (accelerator, engine, format) at any GPU count: the first problem found (if
    any), warnings, and the checkpoint and weights, or why there are none (reported after the
    per-GPU-count checks, as a user would fix those first)."""

    spec: Gemma4DeploymentSpec
    variant: VariantInfo
    accel: Accelerator
    engine: Engine
    fmt: str
    refusal: str | None
    warnings: tuple[str, ...] = ()
    checkpoint: Checkpoint | None = None
    weights: tuple[int, bool] = (0, False)
    missing: str | None = None


def _off_native(accel: Accelerator, fmt: FormatInfo) -> tuple[str | None, tuple[str, ...]]:
    """(refusal, warnings) for a format on a GPU it is not native on."""
    rule = fmt.off_native
    if not accel.is_gpu or rule is None or fmt.native_on(accel):
        return None, ()
    if rule.action == "refuse":
        return f"refused: {rule.message} ({rule.source})", ()
    return None, (f"{rule.message} ({rule.source})",)


def prepare(spec: Gemma4DeploymentSpec, accel: Accelerator, engine: Engine, fmt: str, source: SourceRef | None,
            catalog: Catalog) -> Prepared:
    """Format, engine and checkpoint checks, and the weights: once per (accelerator, engine, format)."""
    variant = catalog.variants[spec.model.variant.value]
    fmt_info = catalog.formats.get(fmt)
    if fmt_info is None or engine.name not in fmt_info.engines:
        return Prepared(spec, variant, accel, engine, fmt, f"{engine.name} does not serve {fmt} weights")
    refusal, warnings = _off_native(accel, fmt_info)
    refusal = engine.refusal(accel) or refusal
    it = spec.model.instruction_tuned
    checkpoint = catalog.checkpoint(variant.name, it, fmt, engine.name) if source is None else None
    if source is None and checkpoint is None:
        return Prepared(spec, variant, accel, engine, fmt, refusal, warnings, missing=(
            f"the catalog has no {fmt} checkpoint of gemma-4-{variant.name}{'-it' if it else ' (base)'} "
            f"for {engine.name}"))
    if checkpoint is None and fmt_info.bytes_per_param is None:
        return Prepared(spec, variant, accel, engine, fmt, refusal, warnings,
                        missing=f"cannot size {fmt} weights of a custom source without a published size")
    weights = engine.weight_bytes(variant, fmt_info, checkpoint)
    return Prepared(spec, variant, accel, engine, fmt, refusal, warnings, checkpoint, weights)


def kv_dtypes(spec: Gemma4DeploymentSpec, accel: Accelerator, engine: Engine, catalog: Catalog) -> tuple[str, ...]:
    """The spec's KV-cache precision, or the ones the engine tries for `auto`, in order."""
    choice = spec.serving.kv_cache_dtype.value
    return (choice,) if choice != "auto" else engine.kv_dtypes(accel, catalog)


def match(p: Prepared, gpus: int, kv_dtype: str, catalog: Catalog) -> Candidate | Rejection:
    """The GPU-count checks (known-bad rules, the engine's parallelism, GPUs per node) on a prepared
    combination; then the candidate, or the first reason it cannot be."""
    def rejection(reason: str) -> Rejection:
        return Rejection(p.accel.name, p.fmt, gpus, reason)

    if p.refusal is not None:
        return rejection(p.refusal)
    warnings = list(p.warnings)
    for rule in catalog.known_bad:
        if rule.matches(engine=p.engine.name, variant=p.variant.name, fmt=p.fmt, accelerator=p.accel, tp=gpus):
            if rule.action == "refuse":
                return rejection(f"refused: {rule.message} ({rule.source})")
            warnings.append(f"{rule.message} ({rule.source})")
    refusal = (catalog.hardware_rules.refusal(p.engine.name, p.accel, gpus, kv_dtype)
               or p.engine.candidate_refusal(p.variant, p.accel, gpus))
    if refusal is not None:
        return rejection(refusal)
    if p.accel.is_gpu and gpus > p.accel.max_per_node:
        return rejection(f"{gpus} GPUs exceed the {p.accel.max_per_node} per node of {p.accel.name}")
    if p.missing is not None:
        return rejection(p.missing)
    weights, estimated = p.weights
    download = p.checkpoint.download_bytes if p.checkpoint and p.checkpoint.download_bytes else weights
    return Candidate(p.spec, p.variant, p.accel, p.engine.name, p.fmt, gpus, p.checkpoint, weights, estimated,
                     download, kv_dtype, tuple(warnings))
