"""llama.cpp: the `llama-server` command line, probes and environment (gemma4-serving.md §5)."""

from __future__ import annotations

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.runtimes import CACHE_MOUNT, EngineContainer, common_env, probes, user_env
from gemma4_operator.sizing import Plan

SERVER_BINARY = "/app/llama-server"  # entry point of the ghcr.io/ggml-org/llama.cpp server images


def _model_args(plan: Plan) -> list[str]:
    source = plan.source
    if source is not None and source.scheme == "pvc":
        return ["-m", source.local_path]
    # -hf fetches the GGUF and, unless told otherwise, the matching mmproj (§5.2)
    args = ["-hf", plan.model_ref]
    return args + (["--no-mmproj"] if plan.text_only else [])


def command_line(plan: Plan, spec: Gemma4DeploymentSpec) -> list[str]:
    """Arguments after llama-server. -c is the total context over all slots (§3.3)."""
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
    if plan.kv_cache_dtype == "fp8":
        # q8_0 is llama.cpp's 8-bit KV; a quantized V cache needs flash attention
        args += ["-ctk", "q8_0", "-ctv", "q8_0", "-fa", "on"]
    if plan.instruction_tuned:
        args.append("--jinja")  # chat template engine: tool calls and the thinking channel
    if plan.instruction_tuned and not plan.reasoning:
        args += ["--reasoning-budget", "0"]
    return args + list(spec.serving.extra_args)


def container(plan: Plan, spec: Gemma4DeploymentSpec) -> EngineContainer:
    startup, readiness, liveness = probes(plan)
    env = [*common_env(spec), {"name": "LLAMA_CACHE", "value": f"{CACHE_MOUNT}/llama.cpp"}, *user_env(spec)]
    return EngineContainer(
        command=[SERVER_BINARY], args=command_line(plan, spec), env=env,
        startup_probe=startup, readiness_probe=readiness, liveness_probe=liveness,
        volume_mounts=[{"name": "cache", "mountPath": CACHE_MOUNT}],
    )
