"""Fetch and match: which (accelerator, engine, format, GPU count) candidates to try, and the checks a
candidate must pass before its engine is asked whether it fits in memory."""

from __future__ import annotations

from gemma4_operator.api import EngineChoice, Gemma4DeploymentSpec, QuantizationChoice
from gemma4_operator.catalog import Accelerator, Catalog
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
    return [e for e in allowed if e.refusal(accel) is None and e.accepts_source(source)]


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


def engine_refusals(spec: Gemma4DeploymentSpec, accel: Accelerator, allowed: list[Engine]) -> list[Rejection]:
    """Why no allowed engine runs on this accelerator (when engine_formats found nothing)."""
    return [Rejection(accel.name, spec.quantization.value, 0, reason)
            for e in allowed if (reason := e.refusal(accel)) is not None]


def gpu_counts(spec: Gemma4DeploymentSpec, accel: Accelerator, engine: Engine, catalog: Catalog) -> list[int]:
    if not accel.is_gpu:
        return [0]
    if spec.accelerator.count:
        return [spec.accelerator.count]
    return engine.gpu_counts(catalog.variants[spec.model.variant.value], accel)


def _warnings_or_refusal(spec: Gemma4DeploymentSpec, accel: Accelerator, engine: Engine, fmt: str, gpus: int,
                         catalog: Catalog) -> tuple[list[str], str | None]:
    """Catalog rules for this combination: the format off its native hardware, known-bad rules."""
    warnings: list[str] = []
    off_native = catalog.formats[fmt].off_native
    if accel.is_gpu and off_native is not None and not catalog.formats[fmt].native_on(accel):
        if off_native.action == "refuse":
            return warnings, f"refused: {off_native.message} ({off_native.source})"
        warnings.append(f"{off_native.message} ({off_native.source})")
    for rule in catalog.known_bad:
        if rule.matches(engine=engine.name, variant=spec.model.variant.value, fmt=fmt, accelerator=accel, tp=gpus):
            if rule.action == "refuse":
                return warnings, f"refused: {rule.message} ({rule.source})"
            warnings.append(f"{rule.message} ({rule.source})")
    return warnings, None


def match(spec: Gemma4DeploymentSpec, accel: Accelerator, engine: Engine, fmt: str, gpus: int,
          source: SourceRef | None, catalog: Catalog) -> Candidate | Rejection:
    """Engine/format/GPU-count checks, catalog rules, checkpoint lookup and weight size."""
    variant = catalog.variants[spec.model.variant.value]

    def rejection(reason: str) -> Rejection:
        return Rejection(accel.name, fmt, gpus, reason)

    fmt_info = catalog.formats.get(fmt)
    if fmt_info is None or engine.name not in fmt_info.engines:
        return rejection(f"{engine.name} does not serve {fmt} weights")
    refusal = engine.refusal(accel)
    if refusal is not None:
        return rejection(refusal)
    warnings, refusal = _warnings_or_refusal(spec, accel, engine, fmt, gpus, catalog)
    refusal = refusal or engine.candidate_refusal(variant, accel, gpus)
    if refusal is not None:
        return rejection(refusal)
    if accel.is_gpu and gpus > accel.max_per_node:
        return rejection(f"{gpus} GPUs exceed the {accel.max_per_node} per node of {accel.name}")

    it = spec.model.instruction_tuned
    checkpoint = catalog.checkpoint(variant.name, it, fmt, engine.name) if source is None else None
    if source is None and checkpoint is None:
        return rejection(f"the catalog has no {fmt} checkpoint of gemma-4-{variant.name}"
                         f"{'-it' if it else ' (base)'} for {engine.name}")
    if checkpoint is None and fmt_info.bytes_per_param is None:
        return rejection(f"cannot size {fmt} weights of a custom source without a published size")
    weights, estimated = engine.weight_bytes(variant, fmt_info, checkpoint)
    download = checkpoint.download_bytes if checkpoint and checkpoint.download_bytes else weights
    kv_dtype = (spec.serving.kv_cache_dtype.value if spec.serving.kv_cache_dtype.value != "auto"
                else engine.auto_kv_dtype(accel, catalog))
    return Candidate(spec, variant, accel, engine.name, fmt, gpus, checkpoint, weights, estimated, download,
                     kv_dtype, tuple(warnings))
