"""The chosen candidate -> the Plan: engine settings, image, probe budget, resources, cost, the runner-up
plans and why they lost, and the notes that say why this one won."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gemma4_operator.api import Gemma4DeploymentSpec, KvCacheDtypeChoice, PlanMemory, QuantizationChoice
from gemma4_operator.catalog import Catalog, EngineInfo
from gemma4_operator.engines.base import Engine, EngineSettings, MemoryFit
from gemma4_operator.planner.plan import Candidate, Plan, StartEstimate
from gemma4_operator.planner.sources import SourceRef, custom
from gemma4_operator.planner.weights import Weights, locate

CPU_CORES_PER_GPU = 4  # host cores per GPU for tokenization, scheduling and the HTTP server
CPU_POD_CORES = 4  # a CPU-only replica
MAX_RUNNERS_UP = 3


@dataclass(frozen=True)
class Choice:
    """A candidate that fits, with what ranks it: cost per replica-hour, quality, native speed."""

    candidate: Candidate
    memory: MemoryFit
    engine: Engine
    cost: float  # USD per replica-hour
    below_floor: bool  # a format below the catalog's quality floor
    native: bool  # the hardware computes in this format natively (not e.g. FP8 through Marlin on Ampere)
    preference: tuple[int, int]  # (engine order, the format's place in the engine's auto order)
    speculative_note: str = ""  # why speculative decoding is on or off (planner/speculative.py)

    @property
    def label(self) -> str:
        c = self.candidate
        where = f"{c.gpus}x {c.accelerator.short_name}" if c.accelerator.is_gpu else "cpu"
        return f"{c.fmt} on {where} ({self.engine.name})"


def start_estimate(download_bytes: int, engine: EngineInfo, weights: Weights, catalog: Catalog, *,
                   shared_compile_cache: bool) -> StartEstimate:
    """The weights' way in: the Hub's bandwidth when the pod downloads, the disk's when they are already there
    (cache PVC, pvc:// or an image volume, pulled before the container starts); plus the engine's compile,
    which a warm start skips when the compile cache is shared (on the model cache PVC), and its fixed start."""
    rate = catalog.weights.disk_load_bandwidth_mib_s if weights.local else engine.load_bandwidth_mib_s
    first = download_bytes / (rate * 1024 * 1024) + engine.compile_s + engine.startup_fixed_s
    warm = first - engine.compile_s if shared_compile_cache else first
    return StartEstimate(math.ceil(first), math.ceil(warm))


def _startup_budget_s(start: StartEstimate) -> int:
    """The startup probe's budget: a first start (the probe is one for every pod, and any pod may be the one
    that compiles), rounded up to the minute."""
    return int(math.ceil(start.first_s / 60) * 60)


def why_lost(runner_up: Choice, best: Choice, catalog: Catalog) -> str:
    """One runner-up and the first rank criterion it lost on, in words."""
    fmt = catalog.formats[runner_up.candidate.fmt]
    if runner_up.below_floor and not best.below_floor:
        reason = f"{fmt.quality}, below the {catalog.quality_floor} quality floor"
    elif runner_up.cost > best.cost * 1.0001:
        reason = f"{runner_up.cost / best.cost:.1f}x the cost (${runner_up.cost:.2f}/h)"
    elif best.native and not runner_up.native:
        reason = f"same cost, but {best.candidate.accelerator.short_name} computes {best.candidate.fmt} natively"
    elif runner_up.preference != best.preference:
        reason = f"same cost, {best.engine.name} prefers {best.candidate.fmt}"
    else:
        reason = (f"same cost, less KV headroom (maxConcurrency {runner_up.memory.max_concurrency} "
                  f"vs {best.memory.max_concurrency})")
    return f"{runner_up.label}: {reason}"


def _runners_up(best: Choice, rest: Sequence[Choice], catalog: Catalog) -> tuple[str, ...]:
    return tuple(why_lost(r, best, catalog) for r in rest[:MAX_RUNNERS_UP])


def _choice_notes(spec: Gemma4DeploymentSpec, best: Choice, catalog: Catalog, chose_accelerator: bool) -> list[str]:
    c, accel = best.candidate, best.candidate.accelerator
    notes: list[str] = []
    if chose_accelerator:
        notes.append(f"accelerator auto: {accel.name} is the cheapest type present that fits "
                     f"(${best.cost:.2f} per replica-hour)")
    if spec.quantization is QuantizationChoice.AUTO:
        quality = catalog.formats[c.fmt].quality
        if best.below_floor:
            notes.append(f"quantization auto: {c.fmt} is {quality}: no {catalog.quality_floor} or better format "
                         "fits, so the plan trades quality for fitting at all")
        else:
            hardware_format = best.native and catalog.formats[c.fmt].off_native is not None
            native = f", which {accel.name} computes natively" if hardware_format else ""
            notes.append(f"quantization auto: {c.fmt} ({quality}{native}) is the cheapest format at the "
                         f"{catalog.quality_floor} quality floor that fits")
    return notes


def _kv_note(c: Candidate, engine: Engine, catalog: Catalog) -> str:
    tried = engine.kv_dtypes(c.accelerator, catalog)
    if c.kv_dtype != tried[0]:
        return f"kv cache {c.kv_dtype}: {tried[0]} does not fit; 8-bit cells halve KV memory"
    if c.kv_dtype == "fp8":
        return "kv cache fp8: the GPU has FP8 support, halving KV memory"
    rule = catalog.hardware_rules.fp8_kv_cache
    if not rule.allows(engine.name, c.accelerator, rule.kv_cache_dtype):
        return (f"kv cache bf16: {engine.name} keeps an {rule.kv_cache_dtype} KV cache for Gemma 4 only from compute "
                f"capability {rule.min_compute_capability:g} (the Triton attention its head_dim 512 needs)")
    return "kv cache bf16: " + ("full-precision cells fit" if len(tried) > 1 else "no FP8 KV on this engine/GPU")


def _notes(spec: Gemma4DeploymentSpec, best: Choice, settings: EngineSettings, catalog: Catalog,
           chose_accelerator: bool) -> tuple[str, ...]:
    c = best.candidate
    notes = [*_choice_notes(spec, best, catalog, chose_accelerator), *settings.parallelism_notes]
    if spec.serving.kv_cache_dtype is KvCacheDtypeChoice.AUTO:
        notes.append(_kv_note(c, best.engine, catalog))
    notes += settings.modality_notes
    notes += settings.lora_notes
    if best.speculative_note:
        notes.append(best.speculative_note)
    if spec.serving.gpu_memory_utilization is not None and not best.engine.info.gpu_memory_utilization_flag:
        notes.append(f"serving.gpuMemoryUtilization ignored: {best.engine.name} has no such setting (it allocates "
                     "what its context needs)")
    if c.weights_estimated:
        notes.append("weights estimated from bytes per parameter (no published size for this checkpoint)")
    if c.accelerator.arch == "arm64":
        notes.append(f"{c.accelerator.name} nodes are arm64 (Grace): kubernetes.io/arch affinity and an arm64 image")
    return (*notes, *c.warnings)


def assemble(spec: Gemma4DeploymentSpec, best: Choice, rest: Sequence[Choice], source: SourceRef | None,
             catalog: Catalog, *, chose_accelerator: bool, images: Mapping[str, str]) -> Plan:
    c, fit, engine = best.candidate, best.memory, best.engine
    info, accel = engine.info, c.accelerator
    settings = engine.settings(c, custom(source))
    model_ref = source.display if source is not None else (c.checkpoint.reference if c.checkpoint else "")
    named = catalog.checkpoint_named(source.repo, source.quant_tag) if source is not None and source.quant_tag \
        else None
    weights = locate(source, c.checkpoint or named, cache=spec.storage.model_cache is not None,
                     text_only=c.text_only)
    download_bytes = c.download_bytes + settings.extra_download_bytes + (c.drafter.download_bytes if c.drafter else 0)
    start = start_estimate(download_bytes, info, weights, catalog, shared_compile_cache=spec.storage.model_cache
                           is not None)
    return Plan(
        variant=c.variant.name, instruction_tuned=spec.model.instruction_tuned, engine=engine.name,
        image=spec.serving.image or engine.image(accel, images), arch=accel.arch, model_ref=model_ref,
        source=source, checkpoint=c.checkpoint, quantization=c.fmt, quantization_flag=settings.quantization_flag,
        accelerator=accel, gpus_per_replica=c.gpus, tensor_parallel_size=settings.tensor_parallel_size,
        expert_parallel=settings.expert_parallel, max_model_len=spec.serving.max_model_len,
        concurrency=spec.serving.concurrency, kv_cache_dtype=c.kv_dtype, max_num_batched_tokens=fit.batch_tokens,
        gpu_memory_utilization=fit.gpu_memory_utilization,
        memory=PlanMemory(weights=round(fit.weights_gib, 1), kv_cache=round(fit.kv_pool_gib, 1),
                          overhead=round(fit.overhead_gib, 1), capacity=round(fit.capacity_gib, 1),
                          lora=round(fit.lora_gib, 2) if c.lora is not None and fit.lora_gib else None),
        memory_needed_gib=fit.needed_gib, max_concurrency=fit.max_concurrency,
        modalities=tuple(m.value for m in spec.serving.modalities),
        reasoning=spec.reasoning_enabled, tool_calling=spec.tool_calling_enabled,
        served_model_name=spec.model.served_name, download_bytes=download_bytes, weights=weights,
        startup_budget_s=_startup_budget_s(start), start=start, port=info.port,
        cpu_request_cores=CPU_CORES_PER_GPU * c.gpus if accel.is_gpu else CPU_POD_CORES,
        cost_per_replica_hour=round(best.cost, 2), alternatives=_runners_up(best, rest, catalog),
        notes=_notes(spec, best, settings, catalog, chose_accelerator), lora=c.lora,
        lora_host_gib=settings.lora_host_gib, drafter=c.drafter, speculative_tokens=c.speculative_tokens,
    )
