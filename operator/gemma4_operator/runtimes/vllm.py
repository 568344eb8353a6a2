"""vLLM: the `vllm serve` command line, probes and environment for a plan (gemma4-serving.md §4)."""

from __future__ import annotations

import json

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.runtimes import CACHE_MOUNT, EngineContainer, common_env, probes, user_env
from gemma4_operator.sizing import Plan

# Per-prompt limits for the encoders a variant has; keys only for requested modalities.
MM_LIMITS = {"image": 4, "audio": 1}
SHM_SIZE = "16Gi"  # NCCL/torch shared memory for tensor parallel (platform.md §8.4)


def _model_args(plan: Plan) -> list[str]:
    source = plan.source
    if source is None:
        return [plan.model_ref]
    if source.scheme == "pvc":
        return [source.local_path]
    return [source.repo, *(["--revision", source.revision] if source.revision else [])]


def _modality_args(plan: Plan) -> list[str]:
    if plan.text_only:
        return ["--language-model-only"]
    limits = {m: MM_LIMITS[m] for m in plan.modalities if m in MM_LIMITS}
    return ["--limit-mm-per-prompt", json.dumps(limits, separators=(",", ":"))]


def command_line(plan: Plan, spec: Gemma4DeploymentSpec) -> list[str]:
    """Arguments after `vllm serve`."""
    args = [
        *_model_args(plan),
        "--served-model-name", plan.served_model_name,
        "--host", "0.0.0.0",
        "--port", str(plan.port),
        "--tensor-parallel-size", str(plan.tensor_parallel_size),
        "--max-model-len", str(plan.max_model_len),
        "--max-num-batched-tokens", str(plan.max_num_batched_tokens),
        "--gpu-memory-utilization", f"{plan.gpu_memory_utilization:.2f}",
        # bf16 KV is the model dtype, which vLLM calls "auto"
        "--kv-cache-dtype", "fp8" if plan.kv_cache_dtype == "fp8" else "auto",
    ]
    if plan.vllm_quantization:
        args += ["--quantization", plan.vllm_quantization]
    if plan.expert_parallel:
        args.append("--enable-expert-parallel")
    args += _modality_args(plan)
    if plan.reasoning:
        args += ["--reasoning-parser", "gemma4"]
    if plan.tool_calling:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", "gemma4"]
    return args + list(spec.serving.extra_args)


def container(plan: Plan, spec: Gemma4DeploymentSpec) -> EngineContainer:
    startup, readiness, liveness = probes(plan)
    env = [*common_env(spec), {"name": "VLLM_NO_USAGE_STATS", "value": "1"}, *user_env(spec)]
    return EngineContainer(
        command=["vllm", "serve"], args=command_line(plan, spec), env=env,
        startup_probe=startup, readiness_probe=readiness, liveness_probe=liveness,
        volume_mounts=[{"name": "cache", "mountPath": CACHE_MOUNT}],
        shm_size=SHM_SIZE if plan.tensor_parallel_size > 1 else "",
    )
