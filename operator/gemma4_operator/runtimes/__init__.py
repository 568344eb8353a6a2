"""Engine runtimes: one module per engine turns a Plan into the serving container's parts.

Each engine module exposes ``container(plan, spec) -> EngineContainer``; ``container_for``
dispatches on ``plan.engine``. Everything here is pure data.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.sizing import Plan

CACHE_MOUNT = "/cache"
K8sObject = dict[str, Any]


@dataclass(frozen=True)
class EngineContainer:
    """The engine-specific parts of the serving pod."""

    command: list[str]
    args: list[str]
    env: list[K8sObject]
    startup_probe: K8sObject
    readiness_probe: K8sObject
    liveness_probe: K8sObject
    volume_mounts: list[K8sObject] = field(default_factory=list)
    shm_size: str = ""  # memory-backed /dev/shm, only for multi-GPU tensor parallel


def http_probe(path: str, *, period: int, timeout: int, failures: int) -> K8sObject:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
            "timeoutSeconds": timeout, "failureThreshold": failures}


def probes(plan: Plan) -> tuple[K8sObject, K8sObject, K8sObject]:
    """Startup covers download + load (budget from the checkpoint size); readiness proves the model
    is served; liveness tolerates long prefills (90 s of failures before a restart)."""
    startup = http_probe(plan.health_path, period=10, timeout=5, failures=math.ceil(plan.startup_budget_s / 10))
    readiness = http_probe(plan.readiness_path, period=5, timeout=5, failures=3)
    liveness = http_probe(plan.health_path, period=15, timeout=10, failures=6)
    return startup, readiness, liveness


def common_env(spec: Gemma4DeploymentSpec) -> list[K8sObject]:
    """Token only through secretKeyRef; the user's env last so it can override ours."""
    env: list[K8sObject] = [{"name": "HF_HOME", "value": f"{CACHE_MOUNT}/huggingface"}]
    source = spec.model.source
    if source is not None and source.token_secret_ref is not None:
        ref = source.token_secret_ref
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return env


def user_env(spec: Gemma4DeploymentSpec) -> list[K8sObject]:
    return [e.model_dump(by_alias=True, exclude_none=True) for e in spec.serving.env]


def unique_env(env: list[K8sObject]) -> list[K8sObject]:
    """One entry per name, the last one winning in the first one's place: a user's env overrides
    ours (e.g. HF_HOME) without a duplicate, which server-side apply refuses ("duplicate entries
    for key [name=...]": env is a list map keyed by name)."""
    last = {e["name"]: e for e in env}
    out: list[K8sObject] = []
    for e in env:
        if e["name"] in last:
            out.append(last.pop(e["name"]))
    return out


def container_for(plan: Plan, spec: Gemma4DeploymentSpec) -> EngineContainer:
    # imported here: the engine modules import this package's shared helpers
    from gemma4_operator.runtimes import llamacpp, vllm

    engines = {"vllm": vllm.container, "llamacpp": llamacpp.container}
    container = engines[plan.engine](plan, spec)
    return dataclasses.replace(container, env=unique_env(container.env))
