"""Typed loader for the catalog data files beside this module.

The YAML files hold the facts (architecture numbers, checkpoints, GPUs, engines, known-bad
combinations) with their sources; this module only parses and indexes them.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict

from gemma4_operator.catalog.drafters import DrafterCatalog

GIB = 1024**3
QUALITY_TIERS = ("lossless", "near-lossless", "lossy")  # best first
Quality = Literal["lossless", "near-lossless", "lossy"]
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"


class CatalogModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariantParams(CatalogModel):
    total: int
    vision: int
    audio: int
    token_embedding: int
    per_layer_embedding: int
    dense_mlp: int
    experts: int

    @property
    def encoders(self) -> int:
        return self.vision + self.audio

    @property
    def text(self) -> int:
        return self.total - self.encoders


class VariantInfo(CatalogModel):
    name: str
    hf_name: str
    kind: Literal["dense", "moe"]
    source: str
    context_length: int
    modalities: tuple[str, ...]
    layers: int
    hidden_size: int
    vocab_size: int
    attention_heads: int
    kv_heads: int
    global_kv_heads: int
    head_dim: int
    global_head_dim: int
    sliding_window: int
    full_attention_every: int
    kv_shared_layers: int
    experts: int
    experts_per_token: int = 0
    intermediate_size: int
    double_wide_mlp: bool  # the kv-shared layers' MLP is twice intermediate_size wide
    per_layer_input_size: int  # 0 without per-layer embeddings
    expert_intermediate_size: int  # 0 without experts
    params: VariantParams

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    def is_full_attention(self, layer: int) -> bool:
        # transformers' rule: every Nth layer is global, and the last layer always is.
        return (layer + 1) % self.full_attention_every == 0 or layer == self.layers - 1

    @functools.cached_property
    def kv_layer_counts(self) -> tuple[int, int]:
        """(sliding, full) layers that own a KV cache: the last kv_shared_layers reuse earlier ones."""
        owning = range(self.layers - self.kv_shared_layers)
        full = sum(1 for i in owning if self.is_full_attention(i))
        return len(owning) - full, full

    def is_kv_shared(self, layer: int) -> bool:
        return layer >= self.layers - self.kv_shared_layers

    def mlp_width(self, layer: int) -> int:
        return self.intermediate_size * (2 if self.double_wide_mlp and self.is_kv_shared(layer) else 1)

    def valid_tensor_parallel_sizes(self, limit: int) -> list[int]:
        """Powers of two vLLM's gemma4.py accepts: they divide the attention heads, and divide or are
        divided by both KV head counts."""
        return list(_tensor_parallel_sizes(self.attention_heads, self.kv_heads, self.global_kv_heads, limit))


class OffNative(CatalogModel):
    """What an explicit choice of a format gets on a GPU it is not native on."""

    action: Literal["refuse", "warn"]
    message: str
    source: str


@functools.cache
def _tensor_parallel_sizes(attention_heads: int, kv_heads: int, global_kv_heads: int, limit: int) -> tuple[int, ...]:
    sizes = []
    tp = 1
    while tp <= limit:
        kv_ok = all((kv % tp == 0) if kv >= tp else (tp % kv == 0) for kv in (kv_heads, global_kv_heads))
        if attention_heads % tp == 0 and kv_ok:
            sizes.append(tp)
        tp *= 2
    return tuple(sizes)


class FormatInfo(CatalogModel):
    name: str
    engines: tuple[str, ...]
    bytes_per_param: float | None
    quantizes: Literal["all", "all_text", "linear", "mlp"]
    source: str
    quality: Quality
    quality_source: str
    min_compute_capability: float | None = None
    native_compute_majors: tuple[int, ...] = ()
    off_native: OffNative | None = None

    def usable_on(self, accel: Accelerator) -> bool:
        """Native here, or off its hardware with only a warning (FP8 weight-only on Ampere still halves
        the weights); a format refused off its hardware (NVFP4 off Blackwell) is not."""
        return self.native_on(accel) or self.off_native is None or self.off_native.action != "refuse"

    def native_on(self, accel: Accelerator) -> bool:
        """Whether the hardware computes in this format (a format without limits is native anywhere)."""
        if self.min_compute_capability is None and not self.native_compute_majors:
            return True
        return accel.is_gpu and (
            (self.min_compute_capability is None or accel.compute_capability >= self.min_compute_capability)
            and (not self.native_compute_majors or accel.compute_major in self.native_compute_majors))


class Checkpoint(CatalogModel):
    variant: str
    instruction_tuned: bool
    format: str
    engine: str
    repo: str
    source: str
    quant_tag: str | None = None
    file: str | None = None
    download_bytes: int | None = None
    resident_bytes: int | None = None
    mmproj: str | None = None
    mmproj_bytes: int | None = None
    online_quantization: str | None = None
    vllm_quantization: str | None = None

    @property
    def reference(self) -> str:
        """How a person names it: repo, plus the GGUF file for llama.cpp."""
        return f"{self.repo}:{self.quant_tag}" if self.quant_tag else self.repo


class Accelerator(CatalogModel):
    name: str
    memory_mib: int
    arch: Literal["amd64", "arm64"]
    source: str
    compute: str = ""
    family: str = "cpu"
    max_per_node: int = 0
    gfd_products: tuple[str, ...] = ()
    gke: tuple[str, ...] = ()
    # The extended resource a pod requests: nvidia.com/gpu, or nvidia.com/mig-<profile> for a MIG slice.
    resource: str = "nvidia.com/gpu"
    # GPUs one replica may span (tensor parallel); None: as many as a node has.
    max_per_replica: int | None = None
    # Total memory as CUDA reports it to the engine (torch.cuda.mem_get_info, vLLM's total_gpu_memory): below
    # NVML's total (memory_mib) by what the driver keeps; the row's cuda_total_source says measured or estimated.
    cuda_total_mib: int | None = None
    cuda_total_source: str = ""

    @property
    def is_gpu(self) -> bool:
        return self.max_per_node > 0

    @property
    def is_mig(self) -> bool:
        return self.resource.startswith(MIG_RESOURCE_PREFIX)

    @property
    def gfd_product_label(self) -> str:
        """The node label GFD puts the product in: per MIG profile under the mixed strategy."""
        return f"{self.resource}.product" if self.is_mig else "nvidia.com/gpu.product"

    @property
    def max_gpus_per_replica(self) -> int:
        return min(self.max_per_node, self.max_per_replica or self.max_per_node)

    @property
    def compute_capability(self) -> float:
        return float(self.compute) if self.compute else 0.0

    @property
    def compute_major(self) -> int:
        return int(self.compute.split(".")[0]) if self.compute else 0

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024

    @property
    def capacity_gib(self) -> float:
        """The memory an engine plans within: CUDA's total where the catalog has it (every GPU row), else
        memory_mib (a CPU pod's budget)."""
        return (self.cuda_total_mib if self.cuda_total_mib is not None else self.memory_mib) / 1024

    @property
    def short_name(self) -> str:
        return self.name.removeprefix("nvidia-")


class Price(CatalogModel):
    """Indicative on-demand USD per GPU-hour (per pod-hour for cpu), with where and when it was read."""

    usd_per_hour: float
    date: str
    source: str


class EngineImages(CatalogModel):
    gpu: dict[str, str]
    cpu: dict[str, str] = {}


class BatchTokensTier(CatalogModel):
    """GPUs with at least min_gib total memory (as CUDA reports it) get `tokens` (and `seqs`), unless the type's
    name contains an except_names entry."""

    min_gib: float
    tokens: int
    seqs: int
    except_names: tuple[str, ...] = ()

    def applies_to(self, accel: Accelerator) -> bool:
        return accel.capacity_gib >= self.min_gib and not any(part in accel.name for part in self.except_names)


class MaxNumBatchedTokens(CatalogModel):
    """vLLM's own defaults for the API server: the first tier that applies (largest first), else `default`
    tokens and `default_seqs` sequences (max_num_seqs, which sizes the sampler's start-up profile)."""

    default: int
    default_seqs: int
    tiers: tuple[BatchTokensTier, ...]
    source: str

    def _tier(self, accel: Accelerator) -> BatchTokensTier | None:
        return next((tier for tier in self.tiers if tier.applies_to(accel)), None)

    def for_accelerator(self, accel: Accelerator) -> int:
        tier = self._tier(accel)
        return tier.tokens if tier is not None else self.default

    def seqs_for_accelerator(self, accel: Accelerator) -> int:
        tier = self._tier(accel)
        return tier.seqs if tier is not None else self.default_seqs


class RuntimeOverhead(CatalogModel):
    """vLLM's memory per GPU besides weights and KV cache, as its start-up profile measures it, fitted on the
    measurement rows of catalog/measurements.yaml (catalog/engines.yaml says which terms are derived, which fitted):
    the process outside torch; the sampler's profile run over max_num_seqs x the vocabulary; the activations of a
    max_num_batched_tokens forward pass; the CUDA-graph pool (none under --enforce-eager); the encoder profile
    (none with --language-model-only). The batch defaults grow with the GPU (catalog max_num_batched_tokens), so
    the overhead does too."""

    non_torch_gib: float
    sampler_bytes_per_logit: float
    activation_bytes_per_token_hidden: float
    cuda_graphs_gib: float
    encoder_profile_fraction: float
    source: str

    def gib(self, variant: VariantInfo, *, batch_tokens: int, max_num_seqs: int, cuda_graphs: bool,
            multimodal: bool) -> float:
        """Overhead per GPU in GiB for one configuration."""
        sampler = self.sampler_bytes_per_logit * max_num_seqs * variant.vocab_size
        activations = self.activation_bytes_per_token_hidden * batch_tokens * variant.hidden_size
        encoders = self.encoder_profile_fraction * variant.params.encoders * 2 if multimodal else 0.0
        graphs = self.cuda_graphs_gib if cuda_graphs else 0.0
        return self.non_torch_gib + graphs + (sampler + activations + encoders) / GIB


class EngineDevices(CatalogModel):
    """Where an engine runs, and what a user is told where it does not."""

    cpu: bool
    cpu_refusal: str = ""
    cpu_source: str = ""
    gpu_min_compute_capability: float
    gpu_refusal: str = ""
    source: str


class ApiKeyInfo(CatalogModel):
    """How an engine takes an API key for its OpenAI endpoint, and which paths stay open without it."""

    env: str  # the environment variable the engine reads the key from (instead of --api-key in args)
    open_paths: tuple[str, ...]  # answered without the key (the probes and the autoscaler's /metrics need some)
    source: str

    def is_open(self, path: str) -> bool:
        return path in self.open_paths


LoraLayers = Literal["every", "kv_owning", "kv_shared", "moe", "per_layer_input", "once_per_layer_input"]
LoraDim = Literal["hidden", "q", "kv", "mlp", "ple", "ple_total", "router", "expert_mlp"]


class LoraModule(CatalogModel):
    """One layer an engine wraps for LoRA: where it exists, how tensor parallelism splits it, its shape."""

    name: str
    layers: LoraLayers
    parallel: Literal["column", "row", "replicated", "experts"]
    input: LoraDim
    outputs: tuple[LoraDim, ...]  # one LoRA slice per packed output (q, k, v; gate, up)


class LoraLayout(CatalogModel):
    dtype_bytes: int
    modules: tuple[LoraModule, ...]
    source: str


class EngineInfo(CatalogModel):
    version: str
    weights: Literal["safetensors", "gguf"]
    devices: EngineDevices
    auto_formats: tuple[str, ...]
    kv_bytes_per_element: dict[str, float]
    images: EngineImages
    port: int
    health_path: str
    readiness_path: str
    overhead_gib: float = 0.0  # a fixed overhead per GPU (llama.cpp's compute buffers); vLLM's is runtime_overhead
    load_bandwidth_mib_s: float
    startup_fixed_s: int  # every start: process, CUDA init, graph capture, warm-up
    source: str
    metrics: dict[str, tuple[str, ...]]
    api_key: ApiKeyInfo
    lora_info: tuple[str, ...] = ()  # the adapters loaded per replica, as labels (the router's LoRA affinity)
    # the fraction of GPU memory the fit plans within; with gpu_memory_utilization_flag the engine's own
    # setting (vLLM's --gpu-memory-utilization, serving.gpuMemoryUtilization overrides it), else a headroom
    gpu_memory_utilization: float = 0.90
    gpu_memory_utilization_flag: bool = False
    block_size: int = 16
    in_flight_batches: int = 1
    max_num_batched_tokens: MaxNumBatchedTokens | None = None
    runtime_overhead: RuntimeOverhead | None = None
    cpu_runtime_gib: float = 0.0
    startup_margin_gib: float = 0.0
    ubatch: int = 512
    ctx_checkpoints: int | None = None  # llama-server --ctx-checkpoints, when the catalog bounds it
    compile_s: int = 0  # a start without the engine's compile cache (vLLM's torch.compile), on top of the fixed part
    lora: LoraLayout | None = None  # the layers that get LoRA slots, where the engine preallocates them

    def image(self, *, gpu: bool, arch: str) -> str:
        table = self.images.gpu if gpu else self.images.cpu
        return table[arch]


class KnownBadMatch(CatalogModel):
    engine: str | None = None
    variant: str | None = None
    format: str | None = None
    family: str | None = None
    tensor_parallel: tuple[int, ...] = ()


class KnownBadRule(CatalogModel):
    id: str
    match: KnownBadMatch
    action: Literal["refuse", "warn"]
    message: str
    source: str

    def matches(self, *, engine: str, variant: str, fmt: str, accelerator: Accelerator, tp: int) -> bool:
        m = self.match
        return all((
            m.engine in (None, engine),
            m.variant in (None, variant),
            m.format in (None, fmt),
            m.family in (None, accelerator.family),
            not m.tensor_parallel or tp in m.tensor_parallel,
        ))


class MigTensorParallelRule(CatalogModel):
    """No tensor parallelism across MIG slices (catalog/hardware_rules.yaml)."""

    max_slices_per_replica: int
    message: str
    source: str

    def refusal(self, accelerator: Accelerator, gpus: int) -> str | None:
        if not accelerator.is_mig or gpus <= self.max_slices_per_replica:
            return None
        return f"refused: {gpus} MIG slices in one replica: {self.message} ({self.source})"


class KvCacheCapabilityRule(CatalogModel):
    """A KV-cache precision an engine stores only from a compute capability on (catalog/hardware_rules.yaml)."""

    engine: str
    kv_cache_dtype: str
    min_compute_capability: float
    message: str
    source: str

    def allows(self, engine: str, accelerator: Accelerator, kv_cache_dtype: str) -> bool:
        return (engine != self.engine or kv_cache_dtype != self.kv_cache_dtype or not accelerator.is_gpu
                or accelerator.compute_capability >= self.min_compute_capability)

    def refusal(self, engine: str, accelerator: Accelerator, kv_cache_dtype: str) -> str | None:
        if self.allows(engine, accelerator, kv_cache_dtype):
            return None
        return (f"refused: {kv_cache_dtype} KV cache on compute capability {accelerator.compute}: "
                f"{self.message} ({self.source})")


class HardwareRules(CatalogModel):
    """catalog/hardware_rules.yaml: one row per rule."""

    mig_tensor_parallel: MigTensorParallelRule
    fp8_kv_cache: KvCacheCapabilityRule

    def refusal(self, engine: str, accelerator: Accelerator, gpus: int, kv_cache_dtype: str) -> str | None:
        """The first rule a candidate breaks, in words a user can act on."""
        return (self.mig_tensor_parallel.refusal(accelerator, gpus)
                or self.fp8_kv_cache.refusal(engine, accelerator, kv_cache_dtype))


class Downloader(CatalogModel):
    image: str
    source: str


class ImageVolumes(CatalogModel):
    enabled_by_default_since: str
    source: str


class WeightsInfo(CatalogModel):
    """catalog/weights.yaml: how the weights reach a serving pod."""

    downloader: Downloader
    disk_load_bandwidth_mib_s: float
    image_volumes: ImageVolumes


class RouterImages(CatalogModel):
    epp: str
    envoy: str
    source: str


class RouterPorts(CatalogModel):
    ext_proc: int
    health: int
    metrics: int
    router: int
    envoy_ready: int


class EppResources(CatalogModel):
    base_cpu_millis: int
    cpu_millis_per_replica: int
    max_cpu_millis: int
    base_memory_mib: int
    memory_mib_per_replica: int
    max_memory_mib: int
    envoy_cpu_millis: int
    envoy_memory_mib: int


class ScorerInfo(CatalogModel):
    plugin: str  # the EPP plugin type
    weight: int
    metric: str | None = None  # engines.yaml `metrics` key or lora_info; None: the EPP's own state
    adapters_only: bool = False


class RoutingInfo(CatalogModel):
    """catalog/routing.yaml: the endpoint picker, its sidecar and its scorers."""

    release: str
    crd_manifest: str
    images: RouterImages
    ports: RouterPorts
    epp_resources: EppResources
    scorers: dict[str, ScorerInfo]


class Catalog(CatalogModel):
    variants: dict[str, VariantInfo]
    formats: dict[str, FormatInfo]
    checkpoints: tuple[Checkpoint, ...]
    accelerators: dict[str, Accelerator]
    cpu: Accelerator
    engines: dict[str, EngineInfo]
    known_bad: tuple[KnownBadRule, ...]
    hardware_rules: HardwareRules
    prices: dict[str, Price]
    quality_floor: Quality
    weights: WeightsInfo
    routing: RoutingInfo
    drafters: DrafterCatalog

    def price(self, accelerator: str) -> float:
        """USD per GPU-hour of an accelerator type (per pod-hour for cpu)."""
        return self.prices[accelerator].usd_per_hour

    def below_floor(self, fmt: str) -> bool:
        """Whether a format's quality is below the floor `quantization: auto` keeps."""
        return QUALITY_TIERS.index(self.formats[fmt].quality) > QUALITY_TIERS.index(self.quality_floor)

    @functools.cached_property
    def _checkpoints_by_key(self) -> dict[tuple[str, bool, str, str], Checkpoint]:
        index: dict[tuple[str, bool, str, str], Checkpoint] = {}
        for c in self.checkpoints:
            index.setdefault((c.variant, c.instruction_tuned, c.format, c.engine), c)
        return index

    def checkpoint(self, variant: str, instruction_tuned: bool, fmt: str, engine: str) -> Checkpoint | None:
        return self._checkpoints_by_key.get((variant, instruction_tuned, fmt, engine))

    def checkpoint_named(self, repo: str, quant_tag: str) -> Checkpoint | None:
        """The catalog's checkpoint a GGUF source names (hf://REPO:QUANT), for its file names."""
        return next((c for c in self.checkpoints if c.repo == repo and c.quant_tag is not None
                     and c.quant_tag.upper() == quant_tag.upper()), None)

    def accelerator(self, name: str) -> Accelerator | None:
        return self.cpu if name == "cpu" else self.accelerators.get(name)

    @property
    def gpu_types(self) -> tuple[str, ...]:
        return tuple(self.accelerators)


def _read(name: str) -> Any:
    return yaml.safe_load(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


@functools.cache
def load_catalog() -> Catalog:
    """Parse and validate the catalog once per process."""
    accel = _read("accelerators.yaml")
    formats = _read("formats.yaml")
    return Catalog(
        variants={v["name"]: VariantInfo(**v) for v in _read("variants.yaml")["variants"]},
        formats={f["name"]: FormatInfo(**f) for f in formats["formats"]},
        quality_floor=formats["quality_floor"],
        prices={name: Price(**p) for name, p in _read("prices.yaml")["prices"].items()},
        checkpoints=tuple(Checkpoint(**c) for c in _read("checkpoints.yaml")["checkpoints"]),
        accelerators={a["name"]: Accelerator(**a) for a in accel["accelerators"]},
        cpu=Accelerator(**accel["cpu"]),
        engines={name: EngineInfo(**e) for name, e in _read("engines.yaml")["engines"].items()},
        known_bad=tuple(KnownBadRule(**r) for r in _read("known_bad.yaml")["rules"]),
        hardware_rules=HardwareRules(**_read("hardware_rules.yaml")),
        weights=WeightsInfo(**_read("weights.yaml")),
        routing=RoutingInfo(**_read("routing.yaml")),
        drafters=DrafterCatalog(**_read("drafters.yaml")),
    )
