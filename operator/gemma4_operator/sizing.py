"""The planner: spec + cluster facts -> a serving Plan, or a PlanError that explains itself.

Pure: no Kubernetes calls, no I/O beyond the (cached) catalog. Structured like a runtime
selector: candidates are fetched (accelerators, formats, GPU counts), each is matched
(checkpoint, known-bad rules) and fitted (memory model), and the fits are scored
(fewest GPUs, then least memory). DESIGN.md §3 is the specification.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from gemma4_operator import memory
from gemma4_operator.api import (
    EngineChoice,
    Gemma4DeploymentSpec,
    KvCacheDtypeChoice,
    Modality,
    PlanMemory,
    PlanStatus,
    QuantizationChoice,
)
from gemma4_operator.catalog import GIB, Accelerator, Catalog, Checkpoint, EngineInfo, VariantInfo, load_catalog
from gemma4_operator.sources import SourceRef, parse_source

VLLM = "vllm"
LLAMACPP = "llamacpp"
_GGUF_FORMATS = ("q4_k_m", "q8_0")
_VLLM_FORMATS = ("nvfp4", "fp8", "int4")
_LLAMACPP_LADDER = ("q4_k_m", "q8_0", "bf16")


@dataclass(frozen=True)
class ClusterFacts:
    """What the planner may use: accelerator types present (catalog names)."""

    accelerator_types: frozenset[str]

    @classmethod
    def every_catalog_type(cls, catalog: Catalog | None = None) -> ClusterFacts:
        return cls(frozenset((catalog or load_catalog()).gpu_types))


@dataclass(frozen=True)
class Fit:
    """One feasible (accelerator, engine, format, GPU count) with its memory numbers (GiB, per GPU)."""

    accelerator: Accelerator
    engine: str
    quantization: str
    gpus: int
    checkpoint: Checkpoint | None
    weights_gib: float
    kv_pool_gib: float
    overhead_gib: float
    usable_gib: float
    per_sequence_gib: float
    max_concurrency: int
    kv_cache_dtype: str
    max_num_batched_tokens: int
    weights_estimated: bool
    download_bytes: int
    needed_gib: float
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejection:
    """Why one candidate does not work, in words a user can act on."""

    accelerator: str
    quantization: str
    gpus: int
    reason: str
    shortfall_gib: float = 0.0

    def describe(self) -> str:
        where = f"{self.gpus}x {self.accelerator}" if self.gpus else self.accelerator
        return f"{self.quantization} on {where}: {self.reason}"


@dataclass(frozen=True)
class Plan:
    """Everything rendering needs; shown in status.plan and by `gemma4-operator plan`."""

    variant: str
    instruction_tuned: bool
    engine: str
    image: str
    arch: str
    model_ref: str
    source: SourceRef | None
    checkpoint: Checkpoint | None
    quantization: str
    vllm_quantization: str | None
    accelerator: Accelerator
    gpus_per_replica: int
    tensor_parallel_size: int
    expert_parallel: bool
    max_model_len: int
    concurrency: int
    kv_cache_dtype: str
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    memory: PlanMemory
    memory_needed_gib: float
    max_concurrency: int
    modalities: tuple[str, ...]
    reasoning: bool
    tool_calling: bool
    served_model_name: str
    download_bytes: int
    startup_budget_s: int
    port: int
    health_path: str
    readiness_path: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def text_only(self) -> bool:
        return self.modalities == ("text",)

    @property
    def gpu_label(self) -> str:
        if not self.accelerator.is_gpu:
            return "cpu"
        return f"{self.gpus_per_replica}x {self.accelerator.short_name}"

    def to_status(self) -> PlanStatus:
        return PlanStatus(
            engine=self.engine, image=self.image, checkpoint=self.model_ref, quantization=self.quantization,
            accelerator=self.accelerator.name, gpus_per_replica=self.gpus_per_replica,
            tensor_parallel_size=self.tensor_parallel_size, max_model_len=self.max_model_len,
            kv_cache_dtype=self.kv_cache_dtype, memory_gib=self.memory, max_concurrency=self.max_concurrency,
            notes=list(self.notes),
        )


class PlanError(Exception):
    """Nothing fits. The message says what, by how much, and the nearest alternatives that do."""

    def __init__(self, summary: str, rejections: Sequence[Rejection], alternatives: Sequence[str] = ()) -> None:
        self.summary = summary
        self.rejections = tuple(rejections)
        self.alternatives = tuple(alternatives)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        lines = [self.summary, *(f"- {r.describe()}" for r in self.rejections)]
        if self.alternatives:
            lines.append("Nearest feasible: " + "; ".join(self.alternatives))
        return "\n".join(lines)

    @property
    def one_line(self) -> str:
        """For a status condition: the summary, the closest miss and the first alternative."""
        parts = [self.summary]
        if self.rejections:
            parts.append(self.rejections[0].describe())
        if self.alternatives:
            parts.append("try " + self.alternatives[0])
        return ". ".join(parts)


# ---------------------------------------------------------------------------------------
# fetch: candidates
# ---------------------------------------------------------------------------------------


def _accelerator_candidates(spec: Gemma4DeploymentSpec, facts: ClusterFacts, catalog: Catalog) -> list[Accelerator]:
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


def _format_ladder(spec: Gemma4DeploymentSpec, accel: Accelerator, source: SourceRef | None) -> list[str]:
    """Formats to try, best first (DESIGN §3 'quantization: auto')."""
    if spec.quantization is not QuantizationChoice.AUTO:
        return [spec.quantization.value]
    if source is not None and source.gguf_format:
        return [source.gguf_format]
    if not accel.is_gpu or spec.engine is EngineChoice.LLAMACPP or (source is not None and source.is_gguf):
        return list(_LLAMACPP_LADDER)
    if accel.compute_capability < 8.0:  # vLLM cannot run Gemma 4 here (known_bad: vllm-turing)
        return list(_LLAMACPP_LADDER) if spec.engine is EngineChoice.AUTO else ["bf16"]
    if accel.compute_major in (10, 12):
        ladder = ["nvfp4", "fp8", "bf16", "int4"]
    elif accel.compute_capability >= 8.9:
        ladder = ["fp8", "bf16", "int4"]
    else:
        ladder = ["bf16", "int4"]
    if spec.engine is EngineChoice.AUTO and source is None:
        ladder += list(_GGUF_FORMATS)  # small GPUs: GGUF on llama.cpp when no vLLM format fits
    return ladder


def _engine_for(spec: Gemma4DeploymentSpec, accel: Accelerator, fmt: str, source: SourceRef | None) -> str:
    if spec.engine is not EngineChoice.AUTO:
        return spec.engine.value
    if not accel.is_gpu or fmt in _GGUF_FORMATS or (source is not None and source.is_gguf):
        return LLAMACPP
    if accel.compute_capability < 8.0:
        return LLAMACPP
    return VLLM


def _gpu_counts(spec: Gemma4DeploymentSpec, accel: Accelerator, engine: str, catalog: Catalog) -> list[int]:
    if not accel.is_gpu:
        return [0]
    if spec.accelerator.count:
        return [spec.accelerator.count]
    if engine == LLAMACPP:
        return [1]
    variant = catalog.variants[spec.model.variant.value]
    return variant.valid_tensor_parallel_sizes(accel.max_per_node)


# ---------------------------------------------------------------------------------------
# match + fit: one candidate
# ---------------------------------------------------------------------------------------


def _kv_dtype(spec: Gemma4DeploymentSpec, accel: Accelerator, engine: str) -> str:
    if spec.serving.kv_cache_dtype is not KvCacheDtypeChoice.AUTO:
        return spec.serving.kv_cache_dtype.value
    return "fp8" if engine == VLLM and accel.compute_capability >= 8.9 else "bf16"


def _checkpoint(spec: Gemma4DeploymentSpec, fmt: str, engine: str, catalog: Catalog) -> Checkpoint | None:
    return catalog.checkpoint(spec.model.variant.value, spec.model.instruction_tuned, fmt, engine)


@dataclass(frozen=True)
class _Matched:
    """A candidate that passed the checks: its checkpoint and weights are known."""

    spec: Gemma4DeploymentSpec
    variant: VariantInfo
    accelerator: Accelerator
    engine: str
    fmt: str
    gpus: int
    checkpoint: Checkpoint | None
    weights_bytes: int
    weights_estimated: bool
    download_bytes: int
    kv_dtype: str
    warnings: tuple[str, ...]

    @property
    def text_only(self) -> bool:
        return tuple(self.spec.serving.modalities) == (Modality.TEXT,)

    def reject(self, reason: str, shortfall: float) -> Rejection:
        return Rejection(self.accelerator.name, self.fmt, self.gpus, reason, shortfall)

    def fit(self, weights_gib: float, pool: float, overhead: float, usable: float, per_seq: float,
            max_conc: int, batch_tokens: int, need: float) -> Fit:
        return Fit(self.accelerator, self.engine, self.fmt, self.gpus, self.checkpoint, weights_gib, pool,
                   overhead, usable, per_seq, max_conc, self.kv_dtype, batch_tokens, self.weights_estimated,
                   self.download_bytes, need, self.warnings)


def _match(spec: Gemma4DeploymentSpec, accel: Accelerator, engine: str, fmt: str, gpus: int,
           source: SourceRef | None, catalog: Catalog) -> _Matched | Rejection:
    """Engine/format/GPU-count checks, known-bad rules, checkpoint lookup and weight size."""
    variant = catalog.variants[spec.model.variant.value]

    def rejection(reason: str) -> Rejection:
        return Rejection(accel.name, fmt, gpus, reason)

    fmt_info = catalog.formats.get(fmt)
    if fmt_info is None or engine not in fmt_info.engines:
        return rejection(f"{engine} does not serve {fmt} weights")
    if engine == VLLM and not accel.is_gpu:
        return rejection("vLLM needs an NVIDIA GPU")
    if engine == LLAMACPP and gpus > 1:
        return rejection("llama.cpp plans use one GPU per replica; leave accelerator.count at 0 or 1")
    warnings: list[str] = []
    for rule in catalog.known_bad:
        if rule.matches(engine=engine, variant=variant.name, fmt=fmt, accelerator=accel, tp=gpus):
            if rule.action == "refuse":
                return rejection(f"refused: {rule.message} ({rule.source})")
            warnings.append(f"{rule.message} ({rule.source})")
    if engine == VLLM and gpus not in variant.valid_tensor_parallel_sizes(64):
        valid = variant.valid_tensor_parallel_sizes(accel.max_per_node)
        return rejection(f"tensor parallel {gpus} does not divide {variant.name}'s attention heads; valid: {valid}")
    if accel.is_gpu and gpus > accel.max_per_node:
        return rejection(f"{gpus} GPUs exceed the {accel.max_per_node} per node of {accel.name}")

    checkpoint = _checkpoint(spec, fmt, engine, catalog) if source is None else None
    if source is None and checkpoint is None:
        it = "-it" if spec.model.instruction_tuned else " (base)"
        return rejection(f"the catalog has no {fmt} checkpoint of gemma-4-{variant.name}{it} for {engine}")
    if checkpoint is None and fmt_info.bytes_per_param is None:
        return rejection(f"cannot size {fmt} weights of a custom source without a published size")
    weights, estimated = memory.resident_weight_bytes(variant, fmt_info, checkpoint, llamacpp=engine == LLAMACPP)
    download = checkpoint.download_bytes if checkpoint and checkpoint.download_bytes else weights
    return _Matched(spec, variant, accel, engine, fmt, gpus, checkpoint, weights, estimated, download,
                    _kv_dtype(spec, accel, engine), tuple(warnings))


def _fit_vllm(m: _Matched, engine: EngineInfo) -> Fit | Rejection:
    """Per GPU: sharded weights + replicated encoders + overhead + a KV pool holding
    `concurrency` start-up reservations of max_model_len tokens."""
    assert engine.max_num_batched_tokens is not None
    concurrency, gpus = m.spec.serving.concurrency, m.gpus
    encoders = memory.encoder_bytes(m.variant)
    weights_gib = ((m.weights_bytes - encoders) / gpus + (0 if m.text_only else encoders)) / GIB
    overhead = engine.overhead_gib + (0.0 if m.text_only else engine.multimodal_overhead_gib)
    usable = m.accelerator.memory_gib * engine.gpu_memory_utilization
    batch = engine.max_num_batched_tokens
    batch_tokens = batch.large_gpu if m.accelerator.memory_gib >= batch.large_gpu_min_gib else batch.small_gpu
    per_seq = memory.vllm_kv_reservation_per_gpu(
        m.variant, m.spec.serving.max_model_len, memory.KV_BYTES_PER_ELEMENT[m.kv_dtype], gpus, batch_tokens,
        engine.block_size) / GIB
    pool = usable - weights_gib - overhead
    max_conc = max(0, math.floor(pool / per_seq))
    need = weights_gib + overhead + concurrency * per_seq
    if max_conc < concurrency:
        return m.reject(
            f"needs {need:.1f} GiB per GPU ({weights_gib:.1f} weights + {overhead:.1f} overhead + "
            f"{concurrency} x {per_seq:.2f} KV) but has {usable:.1f} GiB usable: short by {need - usable:.1f} GiB",
            need - usable)
    return m.fit(weights_gib, pool, overhead, usable, per_seq, max_conc, batch_tokens, need)


def _fit_llamacpp(m: _Matched, engine: EngineInfo) -> Fit | Rejection:
    """One pod (GPU or CPU): GGUF + mmproj when images/audio are served + buffers + KV for all slots."""
    concurrency = m.spec.serving.concurrency
    mmproj = 0 if m.text_only or m.checkpoint is None else (m.checkpoint.mmproj_bytes or 0)
    weights_gib = (m.weights_bytes + mmproj) / GIB
    overhead = engine.overhead_gib + (0.0 if m.accelerator.is_gpu else engine.cpu_runtime_gib)
    usable = m.accelerator.memory_gib * (engine.gpu_memory_utilization if m.accelerator.is_gpu else 1.0)
    bytes_per_element = memory.LLAMACPP_KV_BYTES_PER_ELEMENT[m.kv_dtype]

    def kv_gib(slots: int) -> float:
        return memory.llamacpp_kv_bytes(m.variant, m.spec.serving.max_model_len, slots, bytes_per_element,
                                        engine.ubatch) / GIB

    pool = usable - weights_gib - overhead
    need = weights_gib + overhead + kv_gib(concurrency)
    if need > usable:
        return m.reject(
            f"needs {need:.1f} GiB ({weights_gib:.1f} weights + {overhead:.1f} overhead + "
            f"{kv_gib(concurrency):.1f} KV for {concurrency} slots) but has {usable:.1f} GiB: "
            f"short by {need - usable:.1f} GiB", need - usable)
    max_conc = _largest(lambda n: kv_gib(n) <= pool, concurrency, 1024)
    return m.fit(weights_gib, pool, overhead, usable, kv_gib(1), max_conc, engine.ubatch, need)


def _fit(spec: Gemma4DeploymentSpec, accel: Accelerator, engine: str, fmt: str, gpus: int,
         source: SourceRef | None, catalog: Catalog) -> Fit | Rejection:
    matched = _match(spec, accel, engine, fmt, gpus, source, catalog)
    if isinstance(matched, Rejection):
        return matched
    fit = _fit_vllm if engine == VLLM else _fit_llamacpp
    return fit(matched, catalog.engines[engine])


def _largest(ok: Callable[[int], bool], low: int, high: int) -> int:
    """Largest n in [low, high] with ok(n), given ok(low) holds and ok is monotone."""
    while low < high:
        mid = (low + high + 1) // 2
        if ok(mid):
            low = mid
        else:
            high = mid - 1
    return low


# ---------------------------------------------------------------------------------------
# score + assemble
# ---------------------------------------------------------------------------------------


def _fits_on(spec: Gemma4DeploymentSpec, accel: Accelerator, source: SourceRef | None, catalog: Catalog,
             rejections: list[Rejection]) -> Fit | None:
    """First format of the ladder that fits, on the fewest GPUs."""
    for fmt in _format_ladder(spec, accel, source):
        engine = _engine_for(spec, accel, fmt, source)
        last: Rejection | None = None
        for gpus in _gpu_counts(spec, accel, engine, catalog):
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
    return fit.gpus, fit.accelerator.memory_gib, fit.accelerator.name


def plan(spec: Gemma4DeploymentSpec, facts: ClusterFacts, catalog: Catalog | None = None,
         *, suggest: bool = True) -> Plan:
    """Plan one replica. Raises PlanError (never anything else for a schema-valid spec)."""
    catalog = catalog or load_catalog()
    source = parse_source(spec.model.source.uri) if spec.model.source else None
    rejections: list[Rejection] = []
    candidates = _accelerator_candidates(spec, facts, catalog)
    fits = [f for accel in candidates if (f := _fits_on(spec, accel, source, catalog, rejections))]
    if not fits:
        label = f"gemma-4-{spec.model.variant.value}"
        where = spec.accelerator.type if spec.accelerator.type != "auto" else (
            "any accelerator type present" if candidates[0].is_gpu else "cpu (no GPU types present)")
        alternatives = nearest_alternatives(spec, facts, catalog) if suggest else []
        raise PlanError(f"{label} does not fit on {where}", _closest_first(rejections), alternatives)
    best = min(fits, key=_score)
    return _assemble(spec, best, source, catalog, len(candidates) > 1)


def _closest_first(rejections: Iterable[Rejection]) -> list[Rejection]:
    # Memory misses first, smallest shortfall first; then the hard refusals.
    return sorted(rejections, key=lambda r: (r.shortfall_gib == 0.0, r.shortfall_gib))


def _served_model_name(spec: Gemma4DeploymentSpec) -> str:
    return f"gemma-4-{spec.model.variant.value}" + ("-it" if spec.model.instruction_tuned else "")


def _startup_budget_s(download_bytes: int, engine: EngineInfo) -> int:
    seconds = download_bytes / (engine.load_bandwidth_mib_s * 1024 * 1024) + engine.startup_fixed_s
    return int(math.ceil(seconds / 60) * 60)


def _assemble(spec: Gemma4DeploymentSpec, fit: Fit, source: SourceRef | None, catalog: Catalog,
              chose_accelerator: bool) -> Plan:
    variant = catalog.variants[spec.model.variant.value]
    engine = catalog.engines[fit.engine]
    accel = fit.accelerator
    text_only = tuple(spec.serving.modalities) == (Modality.TEXT,)
    notes: list[str] = []
    if chose_accelerator:
        notes.append(f"accelerator auto: {accel.name} is the cheapest type present that fits "
                     "(fewest GPUs, then least memory)")
    if spec.quantization is QuantizationChoice.AUTO:
        notes.append(f"quantization auto: {fit.quantization} is the fastest format {accel.name} "
                     f"({accel.family} {accel.compute}) runs natively that fits" if accel.is_gpu else
                     f"quantization auto: {fit.quantization} GGUF on llama.cpp, the smallest catalog format on CPU")
    if fit.gpus > 1:
        notes.append(f"{fit.gpus} GPUs with tensor parallel {fit.gpus}: fewer GPUs do not hold the weights "
                     f"plus {spec.serving.concurrency} sequences of KV cache")
        if variant.global_kv_heads < fit.gpus:
            notes.append(f"TP {fit.gpus} exceeds the {variant.global_kv_heads} global KV heads: "
                         "their KV cache is replicated across GPUs")
    expert_parallel = variant.is_moe and fit.engine == VLLM and fit.gpus > 1
    if expert_parallel:
        notes.append(f"mixture of experts on {fit.gpus} GPUs: --enable-expert-parallel shards the "
                     f"{variant.experts} experts")
    if spec.serving.kv_cache_dtype is KvCacheDtypeChoice.AUTO:
        notes.append(f"kv cache {fit.kv_cache_dtype}: " + (
            "the GPU has FP8 support, halving KV memory" if fit.kv_cache_dtype == "fp8"
            else "no FP8 KV on this engine/GPU"))
    if text_only and fit.engine == VLLM:
        notes.append("text only: --language-model-only skips the vision/audio encoders")
    if fit.weights_estimated:
        notes.append("weights estimated from bytes per parameter (no published size for this checkpoint)")
    if accel.arch == "arm64":
        notes.append(f"{accel.name} nodes are arm64 (Grace): kubernetes.io/arch affinity and an arm64 image")
    notes.extend(fit.warnings)

    checkpoint = fit.checkpoint
    vllm_quant = None
    if fit.engine == VLLM:
        if source is not None:
            vllm_quant = "fp8" if fit.quantization == "fp8" else None
        elif checkpoint is not None:
            vllm_quant = checkpoint.online_quantization or checkpoint.vllm_quantization
    model_ref = source.display if source is not None else (checkpoint.reference if checkpoint else "")
    image = spec.serving.image or engine.image(gpu=accel.is_gpu, arch=accel.arch)
    return Plan(
        variant=variant.name, instruction_tuned=spec.model.instruction_tuned, engine=fit.engine, image=image,
        arch=accel.arch, model_ref=model_ref, source=source, checkpoint=checkpoint,
        quantization=fit.quantization, vllm_quantization=vllm_quant, accelerator=accel,
        gpus_per_replica=fit.gpus, tensor_parallel_size=fit.gpus if fit.engine == VLLM else 1,
        expert_parallel=expert_parallel, max_model_len=spec.serving.max_model_len,
        concurrency=spec.serving.concurrency, kv_cache_dtype=fit.kv_cache_dtype,
        max_num_batched_tokens=fit.max_num_batched_tokens,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        memory=PlanMemory(weights=round(fit.weights_gib, 1), kv_cache=round(fit.kv_pool_gib, 1),
                          overhead=round(fit.overhead_gib, 1), capacity=round(accel.memory_gib, 1)),
        memory_needed_gib=fit.needed_gib,
        max_concurrency=fit.max_concurrency, modalities=tuple(m.value for m in spec.serving.modalities),
        reasoning=spec.reasoning_enabled, tool_calling=spec.tool_calling_enabled,
        served_model_name=_served_model_name(spec), download_bytes=fit.download_bytes,
        startup_budget_s=_startup_budget_s(fit.download_bytes, engine), port=engine.port,
        health_path=engine.health_path, readiness_path=engine.readiness_path, notes=tuple(notes),
    )


# ---------------------------------------------------------------------------------------
# alternatives for a PlanError
# ---------------------------------------------------------------------------------------


def _variations(spec: Gemma4DeploymentSpec, catalog: Catalog) -> Iterator[tuple[str, Gemma4DeploymentSpec]]:
    """Single-field relaxations of the spec, most conservative first."""
    serving, accel = spec.serving, spec.accelerator

    def with_serving(**kw: object) -> Gemma4DeploymentSpec:
        return spec.model_copy(update={"serving": serving.model_copy(update=kw)})

    def with_accel(**kw: object) -> Gemma4DeploymentSpec:
        return spec.model_copy(update={"accelerator": accel.model_copy(update=kw)})

    if accel.count:
        yield "accelerator.count: 0 (let the planner choose)", with_accel(count=0)
    if spec.quantization is not QuantizationChoice.AUTO:
        yield "quantization: auto", spec.model_copy(update={"quantization": QuantizationChoice.AUTO})
    if serving.kv_cache_dtype is not KvCacheDtypeChoice.FP8 and spec.engine is not EngineChoice.LLAMACPP:
        yield "serving.kvCacheDtype: fp8", with_serving(kv_cache_dtype=KvCacheDtypeChoice.FP8)
    for conc in (serving.concurrency // 2, serving.concurrency // 4, 1):
        if 1 <= conc < serving.concurrency:
            yield f"serving.concurrency: {conc}", with_serving(concurrency=conc)
    length = serving.max_model_len // 2
    while length >= 4096:
        yield f"serving.maxModelLen: {length}", with_serving(max_model_len=length)
        length //= 2
    if accel.type != "auto":
        for name in catalog.gpu_types:
            if name != accel.type:
                yield f"accelerator.type: {name}", with_accel(type=name, count=0)


def nearest_alternatives(spec: Gemma4DeploymentSpec, facts: ClusterFacts, catalog: Catalog,
                         limit: int = 3) -> list[str]:
    found: list[str] = []
    seen_accelerator_switch = False
    for label, variant_spec in _variations(spec, catalog):
        if label.startswith("accelerator.type") and seen_accelerator_switch:
            continue
        try:
            p = plan(variant_spec, facts, catalog, suggest=False)
        except (PlanError, ValueError):
            continue
        found.append(f"{label} -> {p.quantization} on {p.gpu_label} (maxConcurrency {p.max_concurrency})")
        seen_accelerator_switch |= label.startswith("accelerator.type")
        if len(found) >= limit:
            break
    return found
