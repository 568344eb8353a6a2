"""The planner's values: cluster facts in; candidates, fits and rejections on the way; a Plan or a
PlanError out. Engines read these too (a Candidate to fit, a Plan to render), so they live apart
from the selection logic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gemma4_operator.api import Gemma4DeploymentSpec, Modality, PlanLora, PlanMemory, PlanStatus
from gemma4_operator.catalog import Accelerator, Catalog, Checkpoint, VariantInfo, load_catalog
from gemma4_operator.catalog.drafters import Drafter
from gemma4_operator.planner.lora import LoraSlots
from gemma4_operator.planner.sources import SourceRef
from gemma4_operator.planner.weights import Weights


@dataclass(frozen=True)
class ClusterFacts:
    """What the planner may use: accelerator types present (catalog names)."""

    accelerator_types: frozenset[str]

    @classmethod
    def every_catalog_type(cls, catalog: Catalog | None = None) -> ClusterFacts:
        return cls(frozenset((catalog or load_catalog()).gpu_types))


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
class Candidate:
    """An (accelerator, engine, format, GPU count) that passed the checks: its checkpoint and weights
    are known, and its engine is asked whether it fits in memory."""

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
    lora: LoraSlots | None = None  # adapter slots to fit beside the KV cache (spec.model.adapters)
    drafter: Drafter | None = None  # speculative decoding's MTP drafter, fitted beside the weights
    speculative_tokens: int = 0

    @property
    def text_only(self) -> bool:
        return tuple(self.spec.serving.modalities) == (Modality.TEXT,)

    def reject(self, reason: str, shortfall: float = 0.0) -> Rejection:
        return Rejection(self.accelerator.name, self.fmt, self.gpus, reason, shortfall)


@dataclass(frozen=True)
class StartEstimate:
    """Seconds from a serving pod's start to Ready. ``first_s``: the weights' way in (the Hub's bandwidth when
    the pod downloads, the disk's when they are local) plus the engine's compile and fixed start; ``warm_s``:
    a later start, whose compile artifacts are in the shared compile cache (storage.modelCache: every pod on
    every node mounts it) and which reads local weights from the disk."""

    first_s: int
    warm_s: int


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
    quantization_flag: str | None  # the engine's own quantization option, when it needs one
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
    weights: Weights  # where the serving container loads them from, and how they get there
    startup_budget_s: int
    start: StartEstimate  # seconds from pod start to Ready, first and warm
    port: int  # the engine container's port: probes, the Service's target and the scraper use it
    cpu_request_cores: int  # the serving container's CPU request (cpu/utilization is relative to it)
    cost_per_replica_hour: float = 0.0  # USD, from the catalog's or the operator's prices
    alternatives: tuple[str, ...] = ()  # runner-up plans and why they lost
    notes: tuple[str, ...] = field(default_factory=tuple)
    lora: LoraSlots | None = None
    lora_host_gib: float = 0.0  # host memory of the adapter cache, added to the pod's memory request
    drafter: Drafter | None = None  # speculative decoding's MTP drafter (serving.speculativeDecoding)
    speculative_tokens: int = 0

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
            cost_per_replica_hour=self.cost_per_replica_hour, alternatives=list(self.alternatives),
            notes=list(self.notes), lora=self._lora_status(),
            drafter=self.drafter.repo if self.drafter else "", num_speculative_tokens=self.speculative_tokens,
        )

    def _lora_status(self) -> PlanLora | None:
        s = self.lora
        if s is None:
            return None
        return PlanLora(max_rank=s.max_rank, max_active_adapters=s.active, cached_adapters=s.cached,
                        target_modules=list(s.target_modules), host_gib=self.lora_host_gib)


class PlanError(Exception):
    """Nothing fits. The message says what, by how much, and the nearest alternatives that do."""

    reason = "PlanFailed"  # the Planned=False condition's reason

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
