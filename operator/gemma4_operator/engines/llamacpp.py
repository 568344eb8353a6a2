"""llama.cpp: one GPU or a CPU pod, a unified KV buffer over all slots, and the `llama-server` command line.

KV cells follow llama.cpp's own sizing (ggml-org/llama.cpp src/llama-kv-cache-iswa.cpp): with a
unified KV buffer (-kvu) full-attention layers hold n_ctx = PAD256(slots x max_model_len) cells,
sliding layers min(n_ctx, PAD256(W x slots + n_ubatch)).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from typing_extensions import override

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.api.adapters import ADAPTER_GGUF, adapter_dir
from gemma4_operator.catalog import GIB, Accelerator, Catalog, Checkpoint, FormatInfo, VariantInfo
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
    with_user_env,
)
from gemma4_operator.planner import memory
from gemma4_operator.planner.plan import Candidate, Plan
from gemma4_operator.planner.sources import SourceRef
from gemma4_operator.planner.weights import CACHE_MOUNT, WeightsMode

SERVER_BINARY = "/app/llama-server"  # entry point of the ghcr.io/ggml-org/llama.cpp server images
# Read-only root by default: llama-server is one native binary that writes only what -hf downloads (LLAMA_CACHE,
# on the cache volume: common/arg.cpp fs_get_cache_directory) and files it is told to write (--slot-save-path,
# --log-file: never rendered); HOME and /tmp are volumes anyway (engines/base.py). Its images run as root
# (.devops/cuda.Dockerfile and cpu.Dockerfile set no USER) and need no passwd entry for the UID.
READ_ONLY_ROOT_FILESYSTEM = True
MAX_SLOTS = 1024  # upper bound when searching how many slots the KV budget holds


def kv_bytes(variant: VariantInfo, max_model_len: int, slots: int, bytes_per_element: float, ubatch: int) -> float:
    """KV bytes of a unified buffer for `slots` sequences of max_model_len. llama.cpp rounds n_ctx up
    to 256 cells first (src/llama-context.cpp: GGML_PAD(cparams.n_ctx, 256)), then bounds SWA layers
    by PAD256(W x slots + n_ubatch) (src/llama-kv-cache-iswa.cpp)."""
    sliding, full = variant.kv_layer_counts
    n_ctx = math.ceil(max_model_len * slots / 256) * 256
    swa_cells = min(n_ctx, math.ceil((variant.sliding_window * slots + ubatch) / 256) * 256)
    return (sliding * 2 * variant.kv_heads * variant.head_dim * bytes_per_element * swa_cells
            + full * 2 * variant.global_kv_heads * variant.global_head_dim * bytes_per_element * n_ctx)


class Engine(CatalogEngine):
    @override
    def gpu_counts(self, variant: VariantInfo, accel: Accelerator) -> list[int]:
        return [1] if accel.is_gpu else [0]

    @override
    def candidate_refusal(self, variant: VariantInfo, accel: Accelerator, gpus: int) -> str | None:
        if gpus > 1:
            return "llama.cpp plans use one GPU per replica; leave accelerator.count at 0 or 1"
        return None

    @override
    def kv_dtypes(self, accel: Accelerator, catalog: Catalog) -> tuple[str, ...]:
        return ("bf16", "fp8")  # f16 cells; q8_0 cells (half the memory) when f16 does not fit

    @override
    def weight_bytes(self, variant: VariantInfo, fmt: FormatInfo, checkpoint: Checkpoint | None) -> tuple[int, bool]:
        return memory.resident_weight_bytes(variant, fmt, checkpoint, memory.gguf_text_only_bytes)

    @override
    def fit(self, c: Candidate) -> MemoryFit | Shortfall:
        """One pod (GPU or CPU): GGUF + mmproj when images/audio are served + buffers + KV for all slots.
        maxConcurrency is the most slots the same budget holds: the largest concurrency this accepts."""
        info, concurrency = self.info, c.spec.serving.concurrency
        mmproj = 0 if c.text_only or c.checkpoint is None else (c.checkpoint.mmproj_bytes or 0)
        weights_gib = (c.weights_bytes + mmproj) / GIB
        overhead = info.overhead_gib + (0.0 if c.accelerator.is_gpu else info.cpu_runtime_gib)
        # a planning headroom on a GPU (llama-server itself allocates what -c needs); a CPU pod's whole budget
        utilization = info.gpu_memory_utilization if c.accelerator.is_gpu else 1.0
        budget = c.accelerator.memory_gib * utilization
        bytes_per_element = info.kv_bytes_per_element[c.kv_dtype]

        def kv_gib(slots: int) -> float:
            return kv_bytes(c.variant, c.spec.serving.max_model_len, slots, bytes_per_element, info.ubatch) / GIB

        def fits(slots: int) -> bool:
            return weights_gib + overhead + kv_gib(slots) <= budget

        need = weights_gib + overhead + kv_gib(concurrency)
        if not fits(concurrency):
            return Shortfall(
                f"needs {need:.1f} GiB ({weights_gib:.1f} weights + {overhead:.1f} overhead + "
                f"{kv_gib(concurrency):.1f} KV for {concurrency} slots) but has {budget:.1f} GiB: "
                f"short by {need - budget:.1f} GiB", need - budget)
        # A GPU's memory is all the pod's; a CPU pod gets the memory it needs (whole GiB) as its limit,
        # so the plan describes that pod, not the CPU budget.
        capacity = c.accelerator.memory_gib if c.accelerator.is_gpu else float(math.ceil(need))
        usable = budget if c.accelerator.is_gpu else capacity
        max_conc = _largest(fits, concurrency, MAX_SLOTS)
        return MemoryFit(weights_gib, usable - weights_gib - overhead, overhead, capacity, usable, kv_gib(1), max_conc,
                         info.ubatch, need, utilization)

    @override
    def settings(self, c: Candidate, source: SourceRef | None) -> EngineSettings:
        # -hf also fetches the repository's mmproj unless the plan is text only (--no-mmproj)
        mmproj = 0 if c.text_only or c.checkpoint is None else (c.checkpoint.mmproj_bytes or 0)
        return EngineSettings(extra_download_bytes=mmproj, lora_notes=() if c.lora is None else (LORA_NOTE,))

    @override
    def container(self, plan: Plan, spec: Gemma4DeploymentSpec) -> EngineContainer:
        startup, readiness, liveness = probes(plan, self.info, spec)
        llama_cache = {"name": "LLAMA_CACHE", "value": f"{CACHE_MOUNT}/llama.cpp"}
        env = with_user_env([*common_env(spec, plan, self.info), llama_cache], spec)
        return EngineContainer(
            command=[SERVER_BINARY], args=command_line(plan, spec, self.info.ctx_checkpoints), env=env,
            startup_probe=startup, readiness_probe=readiness, liveness_probe=liveness,
            volume_mounts=cache_mounts(plan), read_only_root_filesystem=READ_ONLY_ROOT_FILESYSTEM,
        )

    @override
    def error_signatures(self) -> tuple[ErrorSignature, ...]:
        return ERROR_SIGNATURES

    @override
    def slots(self, plan: Plan) -> int:
        """llama-server's -np: serving.concurrency slots, each of maxModelLen tokens (:func:`command_line`)."""
        return plan.concurrency


# llama-server's start-up failures, most specific first, as its log prints them (src/llama-context.cpp,
# ggml/src/gguf.cpp, src/llama.cpp); tests/engine produces each with the real server.
ERROR_SIGNATURES: tuple[ErrorSignature, ...] = (
    signature(
        r"failed to initialize the context: failed to allocate buffer for kv cache",
        "KVCacheTooSmall",
        "llama.cpp could not allocate the KV cache for -c {context} (serving.concurrency {concurrency} x "
        "serving.maxModelLen {max_model_len}): lower serving.maxModelLen or serving.concurrency, or choose an "
        "accelerator with more memory; the plan expected {kv_cache_gib} GiB of KV in {capacity_gib} GiB, so the "
        "planner's memory estimate is off",
        "failed to initialize the context", "failed to allocate buffer for kv cache"),
    # LoRA adapters (src/llama-adapter.cpp, common/common.cpp): before the model's own failures, whose lines follow
    signature(
        r"failed to apply lora adapter: (?P<error>[^\n]*)",
        "AdapterLoadFailed",
        "llama.cpp refused an adapter ({error}): model.adapters on llama.cpp must be GGUF LoRA adapters made for "
        "this variant (convert a PEFT adapter with llama.cpp's convert_lora_to_gguf.py --base the base model)",
        "failed to apply lora adapter: "),
    signature(
        r"failed to open '(?P<path>[^']*)': (?P<error>[^\n]*)\n[^\n]*failed to load lora adapter",
        "AdapterLoadFailed",
        "llama.cpp cannot open the adapter file {path} ({error}): check model.adapters' uri and that the adapter "
        "was fetched",
        "failed to open ", "failed to load lora adapter"),
    signature(
        r"failed to open GGUF file '(?P<path>[^']*)' \((?P<error>[^)]*)\)",
        "ModelLoadFailed",
        "llama.cpp cannot open the model file {path} ({error}): check model.source (the GGUF's path or repository) "
        "and that the download finished",
        "failed to open GGUF file", "error loading model"),
    signature(
        r"error loading model: (?P<error>[^\n]*)",
        "ModelLoadFailed",
        "llama.cpp could not load the model ({error}): check model.source and that the GGUF is a Gemma 4 model",
        "error loading model"),
)


# How a client picks an adapter on llama-server: the OpenAI `model` field does not select one (the engine tier
# checks it); a request carries `"lora": [{"id": N, "scale": 1.0}]` (tools/server/README.md, POST /completion and
# the OpenAI endpoints), N the adapter's place in model.adapters; GET /lora-adapters lists them.
LORA_NOTE = ("LoRA on llama.cpp: each adapter loads whole beside the weights (its size is not in the memory plan) "
             "at scale 0, and prompts are not cached (the cache ignores adapters); a request selects one with "
             "\"lora\": [{\"id\": N, \"scale\": 1.0}], N its place in model.adapters (GET /lora-adapters "
             "lists them), not with `model`; serving.lora's slot settings are vLLM's and do not apply")


def _largest(ok: Callable[[int], bool], low: int, high: int) -> int:
    """Largest n in [low, high] with ok(n), given ok(low) holds and ok is monotone."""
    while low < high:
        mid = (low + high + 1) // 2
        if ok(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _model_args(plan: Plan) -> list[str]:
    weights = plan.weights
    if weights.mode is WeightsMode.VOLUME:
        return ["-m", weights.directory]
    if weights.local:
        # the files the download Job fetched (or the image volume holds); no mmproj when text only
        mmproj = ["--mmproj", weights.path(weights.mmproj)] if weights.mmproj else []
        return ["-m", weights.path(weights.gguf), *mmproj]
    # -hf fetches the GGUF and, unless told otherwise, the matching mmproj
    args = ["-hf", plan.model_ref]
    return args + (["--no-mmproj"] if plan.text_only else [])


def command_line(plan: Plan, spec: Gemma4DeploymentSpec, ctx_checkpoints: int | None = None) -> list[str]:
    """Arguments after llama-server. -c is the total context over all slots; ctx_checkpoints bounds the host
    memory sliding-window checkpoints take (catalog engines.yaml)."""
    slots = plan.concurrency
    args = [
        *_model_args(plan),
        "--host", "0.0.0.0",
        "--port", str(plan.port),  # always explicit: the default moved 8080 -> 9931
        "-ngl", "all" if plan.accelerator.is_gpu else "0",
        "-c", str(plan.max_model_len * slots),
        "-np", str(slots),
        "-kvu",
        "--metrics",
        "-a", plan.served_model_name,
    ]
    if ctx_checkpoints is not None:
        args += ["--ctx-checkpoints", str(ctx_checkpoints)]
    if plan.kv_cache_dtype == "fp8":
        # q8_0 is llama.cpp's 8-bit KV; a quantized V cache needs flash attention
        args += ["-ctk", "q8_0", "-ctv", "q8_0", "-fa", "on"]
    if plan.instruction_tuned:
        args.append("--jinja")  # chat template engine: tool calls and the thinking channel
    if plan.instruction_tuned and not plan.reasoning:
        args += ["--reasoning-budget", "0"]
    return args + _lora_args(plan) + list(spec.serving.extra_args)


def _lora_args(plan: Plan) -> list[str]:
    """Each adapter's GGUF at scale 0 (--lora-scaled FILE:0), so that a request without a `lora` field gets the base
    model (a request's adapters default to the command line's scales; --lora would apply them all); ids follow
    model.adapters' order. --no-cache-prompt: this llama-server reuses a slot's cached prompt across requests
    with different adapters, so a base request after an adapter request would read KV computed with the adapter
    (tests/engine/test_llama_lora.py shows both)."""
    if plan.lora is None:
        return []
    files = [arg for name in plan.lora.adapters for arg in ("--lora-scaled", f"{adapter_dir(name)}/{ADAPTER_GGUF}:0")]
    return [*files, "--no-cache-prompt"]
