"""vLLM: where it runs, its start-up memory check, and the `vllm serve` command line.

Memory follows vLLM's own start-up check (vllm-project/vllm vllm/v1/core/kv_cache_utils.py): the KV
pool left after weights and activation profiling must hold `concurrency` worst-case requests of
max_model_len, where a sliding-window layer reserves min(W - 1 + in-flight tokens, L) tokens plus one
block (vllm/v1/kv_cache_interface.py SlidingWindowSpec.max_memory_usage_bytes); in-flight tokens are
max_num_batched_tokens per batch the asynchronous scheduler keeps in flight (VllmConfig.max_in_flight_tokens).
"""

from __future__ import annotations

import json
import math

from typing_extensions import override

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.api.adapters import adapter_dir
from gemma4_operator.catalog import (
    GIB,
    Accelerator,
    Catalog,
    Checkpoint,
    FormatInfo,
    LoraLayout,
    MaxNumBatchedTokens,
    VariantInfo,
    load_catalog,
)
from gemma4_operator.engines.base import (
    CatalogEngine,
    EngineContainer,
    EngineSettings,
    ErrorSignature,
    MemoryFit,
    Shortfall,
    cache_mounts,
    common_env,
    probes,
    signature,
    with_termination_log,
    with_user_env,
)
from gemma4_operator.planner import lora, memory
from gemma4_operator.planner.plan import Candidate, Plan
from gemma4_operator.planner.sources import SourceRef
from gemma4_operator.planner.weights import drafter_directory

# The compile cache, shared: VLLM_CACHE_ROOT (vllm/envs.py, default XDG_CACHE_HOME/vllm) is a subdirectory of the
# model cache volume, mounted writable on its own (the weights' mount stays read-only): with storage.modelCache
# that is the ReadWriteMany PVC every pod on every node mounts, so only the first start of a plan compiles; without
# it, the pod's emptyDir (a restarted container skips the compile, a new pod does not). A subdirectory rather than
# a volume of its own: no second PVC to provision and size (the artifacts are small next to the checkpoint, inside
# the cache's 20 % margin), and it lives and goes with the model cache; the download Job prunes only under
# /cache/models. Where the key comes from (vLLM 0.32.0), so every pod of one plan finds the same directory:
# - vllm/compilation/decorators.py (VLLM_USE_AOT_COMPILE, on by default with torch >= 2.10, vllm/envs.py
#   use_aot_compile; vLLM 0.32.0 needs torch 2.13): VLLM_CACHE_ROOT/torch_compile_cache/torch_aot_compile/{hash},
#   hash = sha256 of vllm/compilation/caching.py aot_compile_hash_factors (the hash of every VLLM_* variable but
#   location-only ones, VLLM_CACHE_ROOT itself included, vllm/envs.py compile_factors; and VllmConfig.compute_hash,
#   vllm/config/vllm.py: vLLM's version, the model, parallel, cache and compilation configs) and the model's
#   forward code; Inductor's cache (TORCHINDUCTOR_CACHE_DIR) is set under it. The traced source files are checked
#   when loading (_verify_source_unchanged): one image, one cache.
# - vllm/compilation/backends.py (without AOT): VLLM_CACHE_ROOT/torch_compile_cache/{sha256(env hash, config hash,
#   traced code, compiler hash)[:10]}; compiler_interface.py puts inductor_cache and triton_cache beside it unless
#   TRITON_CACHE_DIR is set.
# Pods of one plan have the same args and VLLM_* env (nothing per pod), hence one key. TRITON_CACHE_DIR (Triton
# keys kernels by their source and target) goes to the shared cache too.
COMPILE_CACHE_DIR = "/var/cache/vllm"
COMPILE_CACHE_SUBPATH = "vllm-cache"  # on the model cache volume
COMPILE_CACHE_MOUNT = {"name": "cache", "mountPath": COMPILE_CACHE_DIR, "subPath": COMPILE_CACHE_SUBPATH}
# vLLM as a non-root UID the image has no passwd entry for (vllm/vllm-openai runs as root; its Dockerfile sets
# no USER): every cache it writes is named here so none falls back to a path on the image. USER: torch inductor
# names its cache dir after getpass.getuser() (torch/_inductor/runtime/cache_dir_utils.py), which reads USER
# before the passwd entry that an arbitrary UID lacks.
NON_ROOT_ENV: tuple[dict[str, str], ...] = (
    {"name": "USER", "value": "gemma4"},
    {"name": "VLLM_CACHE_ROOT", "value": COMPILE_CACHE_DIR},
    {"name": "TRITON_CACHE_DIR", "value": f"{COMPILE_CACHE_DIR}/triton"},
)
# Not read-only by default: vLLM's JIT paths (torch inductor, Triton, FlashInfer, DeepGEMM, CUDA's kernel cache)
# each pick a cache location of their own, some next to the installed package, and the operator cannot list
# them all for every model and GPU; the writable paths above are volumes either way, and Pod Security
# "restricted" does not require a read-only root. serving.securityContext.readOnlyRootFilesystem opts in.
READ_ONLY_ROOT_FILESYSTEM = False
# Per-prompt limits for the encoders a variant has; keys only for requested modalities.
MM_LIMITS = {"image": 4, "audio": 1}
LISTEN_HOST = "0.0.0.0"  # every interface: the Service and the kubelet's probes reach the pod IP
SHM_SIZE = "16Gi"  # NCCL/torch shared memory between tensor-parallel workers
_FP8_KV, _BF16_KV = ("fp8",), ("bf16",)
_MIN_SHORTFALL_GIB = 0.01
ENFORCE_EAGER = "--enforce-eager"  # vLLM without CUDA graphs: no graph pool in the overhead
_ANY_NODE = 64  # a bound on GPUs per node, to tell "does not divide the heads" from "too many GPUs"


def _heads_per_gpu(heads: int, tp: int) -> int:
    # Heads are split when there are enough of them, otherwise each GPU keeps one replica.
    return heads // tp if heads >= tp else 1


def kv_reservation_per_gpu(variant: VariantInfo, max_model_len: int, bytes_per_element: float,
                           tp: int, in_flight_tokens: int, block_size: int) -> float:
    """Bytes one request of max_model_len reserves on one GPU in vLLM's start-up check
    (vllm/v1/core/kv_cache_utils.py _max_memory_usage_bytes_from_groups): full layers hold every
    token, sliding layers min(W - 1 + in-flight tokens, L) plus one block. Sliding and full pages
    differ in size; vLLM grows the block of the smaller one until they match
    (unify_kv_cache_spec_page_size), so each layer type rounds to its own block."""
    sliding, full = variant.kv_layer_counts
    sliding_token = 2 * _heads_per_gpu(variant.kv_heads, tp) * variant.head_dim * bytes_per_element
    full_token = 2 * _heads_per_gpu(variant.global_kv_heads, tp) * variant.global_head_dim * bytes_per_element
    page = max(sliding_token, full_token) * block_size
    sliding_block, full_block = round(page / sliding_token), round(page / full_token)
    sliding_tokens = (math.ceil(min(variant.sliding_window - 1 + in_flight_tokens, max_model_len) / sliding_block)
                      + 1) * sliding_block
    full_tokens = math.ceil(max_model_len / full_block) * full_block
    return sliding * sliding_token * sliding_tokens + full * full_token * full_tokens


class Engine(CatalogEngine):
    @override
    def gpu_counts(self, variant: VariantInfo, accel: Accelerator) -> list[int]:
        return variant.valid_tensor_parallel_sizes(accel.max_gpus_per_replica)  # 1 on a MIG slice

    @override
    def candidate_refusal(self, variant: VariantInfo, accel: Accelerator, gpus: int) -> str | None:
        if gpus not in variant.valid_tensor_parallel_sizes(_ANY_NODE):
            valid = variant.valid_tensor_parallel_sizes(accel.max_per_node)
            return f"tensor parallel {gpus} does not divide {variant.name}'s attention heads; valid: {valid}"
        return None

    @override
    def kv_dtypes(self, accel: Accelerator, catalog: Catalog) -> tuple[str, ...]:
        # FP8 KV where Gemma 4's attention kernel stores it (catalog/hardware_rules.yaml): it halves KV
        # memory; elsewhere the model's dtype
        return _FP8_KV if catalog.hardware_rules.fp8_kv_cache.allows(self.name, accel, "fp8") else _BF16_KV

    @override
    def weight_bytes(self, variant: VariantInfo, fmt: FormatInfo, checkpoint: Checkpoint | None) -> tuple[int, bool]:
        return memory.resident_weight_bytes(variant, fmt, checkpoint, memory.estimate_weight_bytes)

    def _batch_defaults(self) -> MaxNumBatchedTokens:
        batch = self.info.max_num_batched_tokens
        assert batch is not None, "vLLM's catalog row sets max_num_batched_tokens"
        return batch

    def batch_tokens(self, accel: Accelerator) -> int:
        return self._batch_defaults().for_accelerator(accel)

    def overhead_gib(self, c: Candidate) -> float:
        """vLLM's memory per GPU besides weights and KV (catalog runtime_overhead, fitted on published start-up
        logs): it grows with the GPU's batch defaults, the variant's width and encoders, and the CUDA graphs that
        only --enforce-eager (serving.extraArgs) turns off."""
        overhead = self.info.runtime_overhead
        assert overhead is not None, "vLLM's catalog row sets runtime_overhead"
        return overhead.gib(c.variant, batch_tokens=self.batch_tokens(c.accelerator),
                            max_num_seqs=self._batch_defaults().seqs_for_accelerator(c.accelerator),
                            cuda_graphs=ENFORCE_EAGER not in c.spec.serving.extra_args, multimodal=not c.text_only)

    def kv_reservation(self, variant: VariantInfo, accel: Accelerator, max_model_len: int, kv_dtype: str,
                       gpus: int) -> float:
        """Bytes of KV one request of max_model_len reserves per GPU, with this engine's batch and block."""
        info = self.info
        return kv_reservation_per_gpu(variant, max_model_len, info.kv_bytes_per_element[kv_dtype], gpus,
                                      self.batch_tokens(accel) * info.in_flight_batches, info.block_size)

    def gpu_memory_utilization(self, spec: Gemma4DeploymentSpec) -> float:
        """The user's serving.gpuMemoryUtilization, else the catalog's (vLLM's default); to two decimals, as
        command_line renders it, so the fit and the engine use the same fraction."""
        chosen = spec.serving.gpu_memory_utilization
        return round(chosen if chosen is not None else self.info.gpu_memory_utilization, 2)

    @override
    def fit(self, c: Candidate) -> MemoryFit | Shortfall:
        """Per GPU: sharded weights + replicated encoders + overhead + a KV pool holding
        `concurrency` start-up reservations of max_model_len tokens, with vLLM's start-up variance to spare.
        maxConcurrency is the largest concurrency this accepts, so both come from one number."""
        info, concurrency, gpus = self.info, c.spec.serving.concurrency, c.gpus
        encoders = memory.encoder_bytes(c.variant)
        # the drafter's layers are tensor-parallel like the target's (catalog/drafters.yaml); it has no KV of its own
        sharded = c.weights_bytes - encoders + (c.drafter.download_bytes if c.drafter else 0)
        weights_gib = (sharded / gpus + (0 if c.text_only else encoders)) / GIB
        overhead = self.overhead_gib(c)
        utilization = self.gpu_memory_utilization(c.spec)
        # what CUDA reports (accelerators.yaml cuda_total_mib): vLLM's total_gpu_memory x gpu-memory-utilization
        usable = c.accelerator.capacity_gib * utilization
        batch_tokens = self.batch_tokens(c.accelerator)
        per_seq = self.kv_reservation(c.variant, c.accelerator, c.spec.serving.max_model_len, c.kv_dtype, gpus) / GIB
        lora_gib = self._lora_gib(c)
        if isinstance(lora_gib, Shortfall):
            return lora_gib
        # adapter slots are allocated at load, before vLLM sizes the KV cache from what is left
        pool = usable - weights_gib - overhead - lora_gib
        # vLLM measures weights and the activation peak at start-up; a plan tighter than this may be refused
        max_conc = max(0, math.floor((pool - info.startup_margin_gib) / per_seq))
        need = weights_gib + overhead + lora_gib + concurrency * per_seq
        if concurrency > max_conc:
            if need > usable:
                slots = f" + {lora_gib:.1f} LoRA slots" if lora_gib else ""
                return Shortfall(
                    f"needs {need:.1f} GiB per GPU ({weights_gib:.1f} weights + {overhead:.1f} overhead{slots} + "
                    f"{concurrency} x {per_seq:.2f} KV) but has {usable:.1f} GiB usable: short by "
                    f"{need - usable:.1f} GiB",
                    need - usable)
            return Shortfall(
                f"fits by only {usable - need:.1f} GiB per GPU, less than vLLM's start-up variance of "
                f"{info.startup_margin_gib:.1f} GiB (weights and activation peak as measured at start-up)",
                # a memory shortfall, never 0 (0 means "not about memory" to the GPU-count search)
                max(need + info.startup_margin_gib - usable, _MIN_SHORTFALL_GIB))
        return MemoryFit(weights_gib, pool, overhead, c.accelerator.capacity_gib, usable, per_seq, max_conc,
                         batch_tokens, need, utilization, lora_gib)

    def _lora_layout(self) -> LoraLayout:
        layout = self.info.lora
        assert layout is not None, "vLLM's catalog row describes its LoRA layers"
        return layout

    def _lora_gib(self, c: Candidate) -> float | Shortfall:
        """GiB of adapter slots per GPU: --max-loras slots on every wrapped layer the targets select."""
        if c.lora is None:
            return 0.0
        unknown = lora.unknown_targets(self._lora_layout(), c.lora.target_modules)
        if unknown:
            known = ", ".join(m.name for m in self._lora_layout().modules)
            return Shortfall(f"serving.lora.targetModules {unknown} name no layer vLLM wraps on Gemma 4 (their "
                             f"adapter weights would be ignored): use {known}", 0.0)
        per_slot = lora.slot_bytes(c.variant, self._lora_layout(), c.lora, c.gpus, _expert_parallel(c))
        return c.lora.active * per_slot / GIB

    @override
    def settings(self, c: Candidate, source: SourceRef | None) -> EngineSettings:
        expert_parallel = _expert_parallel(c)
        flag = None
        if source is not None:
            flag = "fp8" if c.fmt == "fp8" else None  # a custom BF16 repo quantized online at load
        elif c.checkpoint is not None:
            flag = c.checkpoint.online_quantization or c.checkpoint.vllm_quantization
        parallelism: list[str] = []
        if c.gpus > 1:
            parallelism.append(f"{c.gpus} GPUs with tensor parallel {c.gpus}: fewer GPUs do not hold the weights "
                               f"plus {c.spec.serving.concurrency} sequences of KV cache")
            if c.variant.global_kv_heads < c.gpus:
                parallelism.append(f"TP {c.gpus} exceeds the {c.variant.global_kv_heads} global KV heads: "
                                   "their KV cache is replicated across GPUs")
        if expert_parallel:
            parallelism.append(f"mixture of experts on {c.gpus} GPUs: --enable-expert-parallel shards the "
                               f"{c.variant.experts} experts")
        modality = ("text only: --language-model-only skips the vision/audio encoders",) if c.text_only else ()
        host = 0.0 if c.lora is None else lora.host_gib(c.variant, self._lora_layout(), c.lora, c.gpus)
        return EngineSettings(c.gpus, expert_parallel, flag, tuple(parallelism), modality,
                              lora_host_gib=host, lora_notes=self._lora_notes(c))

    def _lora_notes(self, c: Candidate) -> tuple[str, ...]:
        """What the slots cost, and on a mixture of experts what leaving the experts out would save."""
        slots = c.lora
        if slots is None:
            return ()
        layout, ep = self._lora_layout(), _expert_parallel(c)
        per_module = lora.slot_bytes_by_module(c.variant, layout, slots.max_rank, c.gpus, ep)
        total = sum(b for name, b in per_module.items() if lora.targeted(name, slots.target_modules))
        notes = [f"LoRA: {slots.active} adapter slots (--max-loras) of rank {slots.max_rank} take "
                 f"{slots.active * total / GIB:.2f} GiB per GPU from the KV cache ({total / GIB:.3f} GiB each)"]
        expert_modules = {m.name for m in layout.modules if m.parallel == "experts"}
        experts = sum(b for name, b in per_module.items()
                      if name in expert_modules and lora.targeted(name, slots.target_modules))
        if experts * 2 > total:
            dense = [name for name in per_module if name not in expert_modules]
            notes.append(f"LoRA: the expert slots are {experts / total:.0%} of it; serving.lora.targetModules "
                         f"{dense} (for adapters that do not train the experts) would save "
                         f"{slots.active * experts / GIB:.2f} GiB per GPU")
        return tuple(notes)

    @override
    def container(self, plan: Plan, spec: Gemma4DeploymentSpec) -> EngineContainer:
        startup, readiness, liveness = probes(plan, self.info, spec)
        # vLLM's root cause is followed by the API server's traceback: keep it for the termination message
        command, literals = with_termination_log(["vllm", "serve"], ERROR_SIGNATURES)
        env = with_user_env([*common_env(spec, plan, self.info), *NON_ROOT_ENV,
                             {"name": "VLLM_NO_USAGE_STATS", "value": "1"}, literals], spec)
        return EngineContainer(
            command=command, args=command_line(plan, spec), env=env,
            startup_probe=startup, readiness_probe=readiness, liveness_probe=liveness,
            volume_mounts=[*cache_mounts(plan), COMPILE_CACHE_MOUNT],
            shm_size=SHM_SIZE if plan.tensor_parallel_size > 1 else "",
            read_only_root_filesystem=READ_ONLY_ROOT_FILESYSTEM,
        )

    @override
    def error_signatures(self) -> tuple[ErrorSignature, ...]:
        return ERROR_SIGNATURES


_PLAN_DISAGREES = ("the plan expected a {kv_cache_gib} GiB KV pool per GPU, room for {max_concurrency} x "
                   "{max_model_len} tokens; vLLM disagrees, so the planner's memory estimate is off for {variant} "
                   "{quantization} on {accelerator}")
_GIB = r"(?P<{}>[\d.]+) GiB"
# vLLM 0.32.0's start-up failures, most specific first. Literals: vllm/v1/core/kv_cache_utils.py
# (_check_enough_kv_cache_memory), vllm/v1/worker/utils.py (free memory check), vllm/config/vllm.py
# (quantization capability), vllm/v1/worker/gpu_model_runner.py and torch (CUDA OOM), huggingface_hub
# (repository errors, raised through vLLM's downloads).
ERROR_SIGNATURES: tuple[ErrorSignature, ...] = (
    signature(
        r"To serve at least one request with the model's max seq len \((?P<seq_len>\d+)\), \("
        + _GIB.format("needed_gib") + r" KV cache is needed, which is larger than the available KV cache memory \("
        + _GIB.format("available_gib") + r"\)\. Based on the available memory, the estimated maximum model length "
        r"is (?P<estimate>\d+)\.",
        "KVCacheTooSmall",
        "vLLM's KV cache ({available_gib} GiB) holds at most {estimate} tokens, fewer than serving.maxModelLen "
        "{seq_len} ({needed_gib} GiB): lower serving.maxModelLen to {estimate} or less, or serving.concurrency, or "
        "choose a larger accelerator; " + _PLAN_DISAGREES,
        "To serve at least one request with the model's max seq len ",
        "cache is needed, which is larger than the available KV cache ", "the estimated maximum model length is "),
    signature(
        r"To serve at least one request with the model's max seq len \((?P<seq_len>\d+)\), \("
        + _GIB.format("needed_gib") + r" KV cache is needed, which is larger than the available KV cache memory \("
        + _GIB.format("available_gib") + r"\)",
        "KVCacheTooSmall",
        "vLLM's KV cache ({available_gib} GiB) cannot hold one request of serving.maxModelLen {seq_len} "
        "({needed_gib} GiB): lower serving.maxModelLen or serving.concurrency, or choose a larger accelerator; "
        + _PLAN_DISAGREES,
        "To serve at least one request with the model's max seq len ",
        "cache is needed, which is larger than the available KV cache "),
    signature(
        r"No available memory for the cache blocks",
        "KVCacheTooSmall",
        "vLLM had no GPU memory left for the KV cache after loading the weights: lower serving.maxModelLen, choose "
        "a smaller quantization or more or larger GPUs; " + _PLAN_DISAGREES,
        "No available memory for the cache blocks. "),
    signature(
        r"Free memory on device (?:\S+ )?\(" + r"(?P<free_gib>[\d.]+)/(?P<total_gib>[\d.]+) GiB\) on startup is less "
        r"than desired GPU memory utilization",
        "GPUMemoryInUse",
        "only {free_gib} of {total_gib} GiB of GPU memory were free at start-up, less than the plan's "
        "gpu-memory-utilization {gpu_memory_utilization}: another process uses this GPU; give each replica "
        "GPUs of its own (no GPU sharing or time-slicing)",
        "Free memory on device ", "is less than desired GPU memory utilization "),
    signature(
        r"The quantization method (?P<method>\S+) is not supported for the current GPU\. Minimum capability: "
        r"(?P<min_capability>\d+)\. Current capability: (?P<current_capability>\d+)",
        "QuantizationUnsupported",
        "quantization {method} needs compute capability {min_capability}, this GPU has {current_capability}: set "
        "spec.quantization to a format {accelerator} supports (auto picks one) or choose a newer accelerator; the "
        "plan chose {quantization} for {accelerator} (compute capability {compute_capability}), so the catalog's "
        "format rules disagree with vLLM's",
        "The quantization method ", "is not supported for the current GPU. Minimum ", "Current capability: "),
    signature(
        r"CUDA out of memory[^\n]*",
        "GPUOutOfMemory",
        "the GPU ran out of memory while vLLM loaded or warmed up {variant} {quantization} on {gpus}x {accelerator}: "
        "lower serving.concurrency or serving.maxModelLen, or choose a smaller quantization or more GPUs; the plan "
        "expected {weights_gib} GiB of weights and a {kv_cache_gib} GiB KV pool per GPU, so the planner's memory "
        "estimate is off",
        "CUDA out of memory"),
    # LoRA adapters the preflight let through, refused when vLLM loads --lora-modules at start-up
    # (vllm/lora/peft_helper.py _validate_features and validate_legal, vllm/exceptions.py LoRAAdapterNotFoundError)
    signature(
        r"LoRA rank (?P<rank>\d+) is greater than max_lora_rank (?P<max_rank>\d+)",
        "AdapterRankTooHigh",
        "an adapter has rank {rank}, above the slots' rank {max_rank} (vLLM --max-lora-rank): set "
        "serving.lora.maxRank to {rank} or the next of vLLM's values above it, or unset it so the plan derives it",
        "LoRA rank ", " is greater than max_lora_rank"),
    signature(
        r"vLLM only supports modules_to_save being either None[^\n]*?Unsupported modules_to_save: "
        r"(?P<modules>\[[^\]]*\])",
        "AdapterNotServable",
        "an adapter saves whole modules {modules} (modules_to_save, e.g. the Google cookbook QLoRA's lm_head and "
        "embed_tokens), which vLLM cannot serve as an adapter: merge it into the base model (save_pretrained_merged) "
        "and serve the merged checkpoint as model.source.uri",
        "vLLM only supports modules_to_save being either None ", "Unsupported modules_to_save: "),
    signature(
        r"vLLM does not yet support DoRA\.",
        "AdapterNotServable",
        "an adapter is a DoRA adapter (use_dora), which vLLM cannot serve: merge it into the base model and serve "
        "the merged checkpoint as model.source.uri, or retrain it as a plain LoRA",
        "vLLM does not yet support DoRA."),
    signature(
        r"Loading lora (?P<name>\S+) failed: No adapter found for (?P<path>\S+)",
        "AdapterNotFound",
        "vLLM found no adapter files for {name} at {path}: check model.adapters' uri (a PEFT directory with "
        "adapter_config.json) and that the adapter was fetched",
        "Loading lora ", " failed: No adapter found for "),
    signature(
        r"Cannot access gated repo for url (?P<url>\S+?)\.?(?=\s|$)",
        "GatedRepository",
        "the model repository {url} is gated: accept its licence on huggingface.co with the account whose token "
        "model.source.tokenSecretRef names, or set tokenSecretRef to such a token",
        "Cannot access gated repo for url "),
    signature(
        r"Repository Not Found for url: (?P<url>\S+?)\.?(?=\s|$)",
        "RepositoryNotFound",
        "the model repository {url} does not exist or is private: check model.source.uri, and for a private "
        "repository model.source.tokenSecretRef",
        "Repository Not Found for url: "),
    signature(
        r"Revision Not Found for url: (?P<url>\S+?)\.?(?=\s|$)",
        "RepositoryNotFound",
        "the model revision {url} does not exist: check the revision in model.source.uri",
        "Revision Not Found for url: "),
)


def _expert_parallel(c: Candidate) -> bool:
    return c.variant.is_moe and c.gpus > 1



def _model_args(plan: Plan) -> list[str]:
    """A local directory (cache PVC, pvc://, image volume) or the Hub repository the pod downloads."""
    weights, source = plan.weights, plan.source
    if weights.local:
        return [weights.directory]
    revision = source.revision if source is not None else ""
    return [weights.repo, *(["--revision", revision] if revision else [])]


def _modality_args(plan: Plan) -> list[str]:
    if plan.text_only:
        return ["--language-model-only"]
    limits = {m: MM_LIMITS[m] for m in plan.modalities if m in MM_LIMITS}
    return ["--limit-mm-per-prompt", json.dumps(limits, separators=(",", ":"))]


def speculative_config(plan: Plan) -> dict[str, object] | None:
    """--speculative-config's JSON (vllm/config/speculative.py SpeculativeConfig): the method drafters.yaml names
    for vLLM, the drafter (the Hub repository, or its directory beside a downloaded checkpoint) and the tokens."""
    if plan.drafter is None:
        return None
    model = drafter_directory(plan.weights) if plan.weights.local else plan.drafter.repo
    method = load_catalog().drafters.engines["vllm"].method
    return {"method": method, "model": model, "num_speculative_tokens": plan.speculative_tokens}


def command_line(plan: Plan, spec: Gemma4DeploymentSpec) -> list[str]:
    """Arguments after `vllm serve`."""
    args = [
        *_model_args(plan),
        "--served-model-name", plan.served_model_name,
        "--host", LISTEN_HOST,
        "--port", str(plan.port),
        "--tensor-parallel-size", str(plan.tensor_parallel_size),
        "--max-model-len", str(plan.max_model_len),
        "--max-num-batched-tokens", str(plan.max_num_batched_tokens),
        "--gpu-memory-utilization", f"{plan.gpu_memory_utilization:.2f}",
        # bf16 KV is the model dtype, which vLLM calls "auto"
        "--kv-cache-dtype", "fp8" if plan.kv_cache_dtype == "fp8" else "auto",
    ]
    if plan.quantization_flag:
        args += ["--quantization", plan.quantization_flag]
    if plan.expert_parallel:
        args.append("--enable-expert-parallel")
    args += _modality_args(plan)
    if plan.reasoning:
        args += ["--reasoning-parser", "gemma4"]
    if plan.tool_calling:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", "gemma4"]
    drafting = speculative_config(plan)
    if drafting is not None:
        args += ["--speculative-config", json.dumps(drafting, separators=(",", ":"))]
    return args + _lora_args(plan) + list(spec.serving.extra_args)


def _lora_args(plan: Plan) -> list[str]:
    """Adapter slots and the adapters, each served under its own name on the base's (vllm/entrypoints/openai/
    cli_args.py LoRAParserAction: JSON {name, path, base_model_name}; vllm/engine/arg_utils.py the LoRA flags)."""
    slots = plan.lora
    if slots is None:
        return []
    args = ["--enable-lora", "--max-loras", str(slots.active), "--max-lora-rank", str(slots.max_rank),
            "--max-cpu-loras", str(slots.cached)]
    if slots.target_modules:
        args += ["--lora-target-modules", *slots.target_modules]
    if slots.towers:
        args.append("--enable-tower-connector-lora")
    modules = [json.dumps({"name": name, "path": adapter_dir(name), "base_model_name": plan.served_model_name},
                          separators=(",", ":")) for name in slots.adapters]
    return [*args, "--lora-modules", *modules]
