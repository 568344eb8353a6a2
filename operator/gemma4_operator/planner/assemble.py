"""A chosen candidate -> the Plan: engine settings, image, probes budget, resources and the notes that
say why."""

from __future__ import annotations

import math
from collections.abc import Mapping

from gemma4_operator.api import Gemma4DeploymentSpec, KvCacheDtypeChoice, PlanMemory, QuantizationChoice
from gemma4_operator.catalog import EngineInfo
from gemma4_operator.engines.base import Engine, EngineSettings, MemoryFit
from gemma4_operator.planner.plan import Candidate, Plan
from gemma4_operator.planner.sources import SourceRef

CPU_CORES_PER_GPU = 4  # host cores per GPU for tokenization, scheduling and the HTTP server
CPU_POD_CORES = 4  # a CPU-only replica


def _served_model_name(spec: Gemma4DeploymentSpec) -> str:
    return f"gemma-4-{spec.model.variant.value}" + ("-it" if spec.model.instruction_tuned else "")


def _startup_budget_s(download_bytes: int, engine: EngineInfo) -> int:
    seconds = download_bytes / (engine.load_bandwidth_mib_s * 1024 * 1024) + engine.startup_fixed_s
    return int(math.ceil(seconds / 60) * 60)


def _choice_notes(spec: Gemma4DeploymentSpec, c: Candidate, chose_accelerator: bool) -> list[str]:
    accel = c.accelerator
    notes: list[str] = []
    if chose_accelerator:
        notes.append(f"accelerator auto: {accel.name} is the cheapest type present that fits "
                     "(fewest GPUs, then least memory)")
    if spec.quantization is QuantizationChoice.AUTO:
        notes.append(f"quantization auto: {c.fmt} is the fastest format {accel.name} "
                     f"({accel.family} {accel.compute}) runs natively that fits" if accel.is_gpu else
                     f"quantization auto: {c.fmt} GGUF on llama.cpp, the smallest catalog format on CPU")
    return notes


def _notes(spec: Gemma4DeploymentSpec, c: Candidate, settings: EngineSettings, chose_accelerator: bool) -> tuple[
        str, ...]:
    notes = [*_choice_notes(spec, c, chose_accelerator), *settings.parallelism_notes]
    if spec.serving.kv_cache_dtype is KvCacheDtypeChoice.AUTO:
        notes.append(f"kv cache {c.kv_dtype}: " + (
            "the GPU has FP8 support, halving KV memory" if c.kv_dtype == "fp8" else "no FP8 KV on this engine/GPU"))
    notes += settings.modality_notes
    if c.weights_estimated:
        notes.append("weights estimated from bytes per parameter (no published size for this checkpoint)")
    if c.accelerator.arch == "arm64":
        notes.append(f"{c.accelerator.name} nodes are arm64 (Grace): kubernetes.io/arch affinity and an arm64 image")
    return (*notes, *c.warnings)


def assemble(spec: Gemma4DeploymentSpec, c: Candidate, fit: MemoryFit, engine: Engine, source: SourceRef | None,
             *, chose_accelerator: bool, images: Mapping[str, str]) -> Plan:
    info, accel = engine.info, c.accelerator
    settings = engine.settings(c, source)
    model_ref = source.display if source is not None else (c.checkpoint.reference if c.checkpoint else "")
    return Plan(
        variant=c.variant.name, instruction_tuned=spec.model.instruction_tuned, engine=engine.name,
        image=spec.serving.image or engine.image(accel, images), arch=accel.arch, model_ref=model_ref,
        source=source, checkpoint=c.checkpoint, quantization=c.fmt, quantization_flag=settings.quantization_flag,
        accelerator=accel, gpus_per_replica=c.gpus, tensor_parallel_size=settings.tensor_parallel_size,
        expert_parallel=settings.expert_parallel, max_model_len=spec.serving.max_model_len,
        concurrency=spec.serving.concurrency, kv_cache_dtype=c.kv_dtype, max_num_batched_tokens=fit.batch_tokens,
        gpu_memory_utilization=info.gpu_memory_utilization,
        memory=PlanMemory(weights=round(fit.weights_gib, 1), kv_cache=round(fit.kv_pool_gib, 1),
                          overhead=round(fit.overhead_gib, 1), capacity=round(accel.memory_gib, 1)),
        memory_needed_gib=fit.needed_gib, max_concurrency=fit.max_concurrency,
        modalities=tuple(m.value for m in spec.serving.modalities),
        reasoning=spec.reasoning_enabled, tool_calling=spec.tool_calling_enabled,
        served_model_name=_served_model_name(spec), download_bytes=c.download_bytes,
        startup_budget_s=_startup_budget_s(c.download_bytes, info), port=info.port,
        cpu_request_cores=CPU_CORES_PER_GPU * c.gpus if accel.is_gpu else CPU_POD_CORES,
        notes=_notes(spec, c, settings, chose_accelerator),
    )
