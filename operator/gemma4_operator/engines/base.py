"""The Engine protocol and what every engine shares.

An engine owns everything that differs between serving engines: where it runs and which
formats it serves (from its catalog row and formats.yaml), its memory fit, its command line,
env, ports and probes, the metrics it exposes and its default autoscaling signals. The
planner, renderer and autoscaler only ask an :class:`Engine`; none of them compares names.
:class:`CatalogEngine` implements the parts that are plain catalog lookups.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

from gemma4_operator.api import Gemma4DeploymentSpec, SecretKeyRef
from gemma4_operator.api.metric_names import Signal
from gemma4_operator.catalog import Accelerator, Catalog, Checkpoint, EngineInfo, FormatInfo, VariantInfo
from gemma4_operator.planner.plan import Candidate, Plan
from gemma4_operator.planner.sources import SourceRef
from gemma4_operator.planner.weights import CACHE_MOUNT, WeightsMode

K8sObject = dict[str, Any]

LORA_INFO = "lora_info"  # engines.yaml: the adapters each replica holds (not an autoscaling signal)
# catalog engines.yaml `metrics` keys -> autoscaling signals
_METRIC_KEYS = {
    "queue_length": Signal.QUEUE_LENGTH,
    "batch_size": Signal.BATCH_SIZE,
    "kv_cache_usage": Signal.KV_CACHE_USAGE,
    "request_count": Signal.REQUEST_COUNT,
}


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
    # the engine's default for securityContext.readOnlyRootFilesystem (each engine module says why)
    read_only_root_filesystem: bool = False


@dataclass(frozen=True)
class MemoryFit:
    """An engine's memory numbers for one candidate (GiB per GPU, or per pod on CPU)."""

    weights_gib: float
    kv_pool_gib: float
    overhead_gib: float
    capacity_gib: float  # the GPU's memory, or the CPU pod's memory limit
    usable_gib: float
    per_sequence_gib: float
    max_concurrency: int
    batch_tokens: int
    needed_gib: float
    gpu_memory_utilization: float  # the fraction of a GPU's memory the fit used (1.0 on CPU)
    lora_gib: float = 0.0  # adapter slots, taken from what the KV pool would have had


@dataclass(frozen=True)
class Shortfall:
    """Why a candidate does not fit in memory, and by how much."""

    reason: str
    shortfall_gib: float


@dataclass(frozen=True)
class ErrorSignature:
    """An engine failure recognised in a container's termination message (its last log lines).

    ``advice`` is a ``str.format`` template over the pattern's named groups and :func:`plan_values`;
    it says what to change in the spec. ``literals`` are the pieces of the engine's own text the
    pattern is built from, each as it appears in one string of the engine's sources (the tests find
    them there, so a reworded upstream message is noticed).
    """

    pattern: re.Pattern[str]
    reason: str
    advice: str
    literals: tuple[str, ...]


@dataclass(frozen=True)
class Diagnosis:
    """A matched signature: the Degraded reason, what to change, and the engine's line that matched."""

    reason: str
    message: str
    evidence: str


def signature(pattern: str, reason: str, advice: str, *literals: str) -> ErrorSignature:
    return ErrorSignature(re.compile(pattern), reason, advice, literals)


@functools.cache
def _termination_log_source() -> str:
    return resources.files(__package__).joinpath("termination_log.py").read_text(encoding="utf-8")


def with_termination_log(command: list[str], signatures: Sequence[ErrorSignature]) -> tuple[list[str], K8sObject]:
    """The command run under engines/termination_log.py (``python3 -c``, standard library only), and the
    env entry naming the signature texts whose lines it keeps for the termination message."""
    literals = sorted({piece for sig in signatures for piece in sig.literals})
    return (["python3", "-c", _termination_log_source(), *command],
            {"name": "GEMMA4_ERROR_LITERALS", "value": "\n".join(literals)})


def plan_values(plan: Plan) -> dict[str, Any]:
    """The plan's numbers an advice template may name."""
    return {
        "variant": plan.variant, "quantization": plan.quantization, "accelerator": plan.accelerator.name,
        "gpus": plan.gpus_per_replica, "max_model_len": plan.max_model_len, "concurrency": plan.concurrency,
        "context": plan.max_model_len * plan.concurrency, "max_concurrency": plan.max_concurrency,
        "kv_cache_gib": f"{plan.memory.kv_cache:.2f}", "weights_gib": f"{plan.memory.weights:.2f}",
        "memory_needed_gib": f"{plan.memory_needed_gib:.1f}", "capacity_gib": f"{plan.memory.capacity:.1f}",
        "gpu_memory_utilization": f"{plan.gpu_memory_utilization:.2f}",
        "compute_capability": plan.accelerator.compute_capability,
    }


EVIDENCE_CHARS = 300


def diagnose(signatures: Sequence[ErrorSignature], text: str, plan: Plan) -> Diagnosis | None:
    """The first signature found in ``text`` (a termination message), as a Degraded reason and message."""
    for sig in signatures:
        found = sig.pattern.search(text)
        if found is None:
            continue
        groups = {k: v for k, v in found.groupdict().items() if v is not None}
        evidence = " ".join(found.group(0).split())
        if len(evidence) > EVIDENCE_CHARS:
            evidence = evidence[: EVIDENCE_CHARS - 1] + "…"
        return Diagnosis(sig.reason, sig.advice.format(**plan_values(plan), **groups), evidence)
    return None


@dataclass(frozen=True)
class EngineSettings:
    """Plan values only some engines have: parallelism, a quantization flag, and the plan notes that
    explain them (parallelism notes follow the format note, modality notes the KV-cache note)."""

    tensor_parallel_size: int = 1
    expert_parallel: bool = False
    quantization_flag: str | None = None
    parallelism_notes: tuple[str, ...] = ()
    modality_notes: tuple[str, ...] = ()
    extra_download_bytes: int = 0  # files fetched besides the checkpoint's weights (llama.cpp's mmproj)
    lora_host_gib: float = 0.0  # host memory of the engine's adapter cache (pod memory request)
    lora_notes: tuple[str, ...] = ()  # what the adapter slots cost and what would save memory


class Engine(Protocol):
    """What the planner, renderer and autoscaler may ask of an engine."""

    @property
    def name(self) -> str: ...

    @property
    def info(self) -> EngineInfo: ...

    def refusal(self, accel: Accelerator) -> str | None:
        """Why the engine cannot run on this accelerator at all, or None."""

    def source_refusal(self, source: SourceRef | None) -> str | None:
        """Why the engine cannot load weights from this custom source, or None (None: the catalog's)."""

    def auto_formats(self, accel: Accelerator, catalog: Catalog) -> list[str]:
        """Formats `quantization: auto` tries on this accelerator, best first."""

    def gpu_counts(self, variant: VariantInfo, accel: Accelerator) -> list[int]:
        """GPU counts per replica to try, fewest first."""

    def candidate_refusal(self, variant: VariantInfo, accel: Accelerator, gpus: int) -> str | None:
        """Why this GPU count cannot work for the engine, or None."""

    def kv_dtypes(self, accel: Accelerator, catalog: Catalog) -> tuple[str, ...]:
        """KV-cache precisions `kvCacheDtype: auto` tries, in order (the first that fits wins)."""

    def weight_bytes(self, variant: VariantInfo, fmt: FormatInfo, checkpoint: Checkpoint | None) -> tuple[int, bool]:
        """(bytes of weights the engine loads, whether that is an estimate)."""

    def fit(self, candidate: Candidate) -> MemoryFit | Shortfall:
        """The candidate's memory fit at the requested concurrency."""

    def settings(self, candidate: Candidate, source: SourceRef | None) -> EngineSettings:
        """Engine-only plan values for a candidate that fits."""

    def image(self, accel: Accelerator, overrides: Mapping[str, str]) -> str:
        """The container image: an operator-wide override by image key, else the catalog's."""

    def image_keys(self, *, gpu: bool) -> tuple[str, ...]:
        """`--image KEY=IMAGE` keys that set this engine's image, most specific first."""

    def container(self, plan: Plan, spec: Gemma4DeploymentSpec) -> EngineContainer:
        """Command, args, env, probes and mounts of the serving container."""

    def metric_names(self) -> dict[Signal, tuple[str, ...]]:
        """Metric names per autoscaling signal, newest name first; absent signals are not exposed."""

    def slots(self, plan: Plan) -> int:
        """Requests one replica runs at once: what the autoscaler's defaults, a starting pod's absorbed queue
        and a wake from zero count with."""

    def default_signals(self, plan: Plan) -> tuple[tuple[Signal, float], ...]:
        """(signal, target) pairs the autoscaler uses when the spec names no metrics."""

    def exposed_metric(self, key: str) -> str | None:
        """The metric of a catalog key (engines.yaml ``metrics`` keys, or ``lora_info``) this engine's release
        exports, newest name first; None when it exports none (the endpoint picker's config reads it)."""

    def error_signatures(self) -> tuple[ErrorSignature, ...]:
        """Start-up failures recognised in the serving container's termination message, most specific first."""


class CatalogEngine(Engine):
    """The parts of an engine that are catalog lookups; engine modules subclass it."""

    def __init__(self, name: str, info: EngineInfo) -> None:
        self._name = name
        self._info = info
        # per accelerator type: asked for every candidate of every plan, constant per engine
        self._refusals: dict[str, str | None] = {}
        self._auto_formats: dict[tuple[int, str], list[str]] = {}

    @property
    def name(self) -> str:
        return self._name

    @property
    def info(self) -> EngineInfo:
        return self._info

    def refusal(self, accel: Accelerator) -> str | None:
        if accel.name not in self._refusals:
            devices = self._info.devices
            if not accel.is_gpu:
                self._refusals[accel.name] = None if devices.cpu else f"{devices.cpu_refusal} ({devices.cpu_source})"
            elif accel.compute_capability < devices.gpu_min_compute_capability:
                self._refusals[accel.name] = f"{devices.gpu_refusal} ({devices.source})"
            else:
                self._refusals[accel.name] = None
        return self._refusals[accel.name]

    def source_refusal(self, source: SourceRef | None) -> str | None:
        """GGUF sources (a quant tag or a .gguf path) for a GGUF engine, anything else for the others: llama.cpp
        loads one named file, not a safetensors repository (hf://REPO@REV)."""
        if source is None or source.is_gguf == (self._info.weights == "gguf"):
            return None
        if source.is_gguf:
            return f"{self._name} loads {self._info.weights} repositories, not GGUF files ({source.display})"
        return (f"{self._name} loads one GGUF file: name it with hf://REPO:QUANT or pvc://CLAIM/PATH.gguf "
                f"({source.display} is not one)")

    def auto_formats(self, accel: Accelerator, catalog: Catalog) -> list[str]:
        key = (id(catalog), accel.name)
        if key not in self._auto_formats:
            self._auto_formats[key] = [f for f in self._info.auto_formats if catalog.formats[f].usable_on(accel)]
        return self._auto_formats[key]

    def image(self, accel: Accelerator, overrides: Mapping[str, str]) -> str:
        for key in self.image_keys(gpu=accel.is_gpu):
            if key in overrides:
                return overrides[key]
        return self._info.image(gpu=accel.is_gpu, arch=accel.arch)

    def image_keys(self, *, gpu: bool) -> tuple[str, ...]:
        return (self._name,) if gpu or not self._info.images.cpu else (f"{self._name}-cpu", self._name)

    def error_signatures(self) -> tuple[ErrorSignature, ...]:
        return ()

    def metric_names(self) -> dict[Signal, tuple[str, ...]]:
        return {_METRIC_KEYS[key]: tuple(names) for key, names in self._info.metrics.items() if names}

    def slots(self, plan: Plan) -> int:
        """The plan's maxConcurrency: the requests of maxModelLen tokens the KV pool holds at once."""
        return plan.max_concurrency

    def default_signals(self, plan: Plan) -> tuple[tuple[Signal, float], ...]:
        """Requests in flight per replica against the plan's slots (:meth:`slots`), paired with the queue; the
        same for every engine (both expose running and waiting). A full batch alone is within the HPA's 10 %
        tolerance (1 / BUSY_SLOTS < 1.1), so the batch holds the count while replicas are busy and only a queue
        scales up: a momentary full batch at one replica does not buy a second (+100 %), and a KV fraction,
        which rises with prompt length rather than load, is not asked. Measured on the trace benchmark
        (tests/benchmarks/autoscaling, the same settings on every trace, RESULTS.md)."""
        return ((Signal.QUEUE_LENGTH, DEFAULT_QUEUE), (Signal.BATCH_SIZE, round(BUSY_SLOTS * self.slots(plan), 2)))

    def exposed_metric(self, key: str) -> str | None:
        names = self._info.lora_info if key == LORA_INFO else self._info.metrics.get(key, ())
        return names[0] if names else None


DEFAULT_QUEUE = 2.0  # requests waiting per replica in the default policy (the API's default target is 5)
BUSY_SLOTS = 0.925  # the share of the plan's slots in use the default policy keeps per replica


def http_probe(path: str, *, period: int, timeout: int, failures: int) -> K8sObject:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
            "timeoutSeconds": timeout, "failureThreshold": failures}


def probes(plan: Plan, info: EngineInfo, spec: Gemma4DeploymentSpec) -> tuple[K8sObject, K8sObject, K8sObject]:
    """Startup covers download + load (budget from the checkpoint size); readiness proves the model
    is served; liveness tolerates long prefills (90 s of failures before a restart). With an API key, a
    probe on a path the engine guards (the kubelet cannot send the key) uses the health path instead."""
    readiness_path = info.readiness_path
    if spec.serving.api_key_secret_ref is not None and not info.api_key.is_open(readiness_path):
        readiness_path = info.health_path
    startup = http_probe(info.health_path, period=10, timeout=5, failures=math.ceil(plan.startup_budget_s / 10))
    readiness = http_probe(readiness_path, period=5, timeout=5, failures=3)
    liveness = http_probe(info.health_path, period=15, timeout=10, failures=6)
    return startup, readiness, liveness


def secret_env(name: str, ref: SecretKeyRef) -> K8sObject:
    """An env entry the kubelet fills from a Secret: the value never enters the pod spec or the args."""
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def hub_env(spec: Gemma4DeploymentSpec, *, token: bool) -> list[K8sObject]:
    """The Hugging Face cache on the cache volume; the token (through secretKeyRef) only for a pod that
    downloads."""
    env: list[K8sObject] = [{"name": "HF_HOME", "value": f"{CACHE_MOUNT}/huggingface"}]
    source = spec.model.source
    if token and source is not None and source.token_secret_ref is not None:
        env.append(secret_env("HF_TOKEN", source.token_secret_ref))
    return env


# Every pod we create runs as a non-root UID that the images do not know (no passwd entry, HOME=/ or /root):
# HOME and /tmp are emptyDir volumes (render/pod_security.py), and the caches engines and libraries put under
# HOME (XDG_CACHE_HOME: ~/.cache) land there.
HOME_DIR = "/home/gemma4"
TMP_DIR = "/tmp"
SCRATCH_ENV: tuple[K8sObject, ...] = ({"name": "HOME", "value": HOME_DIR},
                                      {"name": "XDG_CACHE_HOME", "value": f"{HOME_DIR}/.cache"})


def common_env(spec: Gemma4DeploymentSpec, plan: Plan, info: EngineInfo) -> list[K8sObject]:
    """The serving container's: weights already on a disk keep the Hub offline, so a scale-up never
    touches it (and an air-gapped cluster works), and the HF token stays out of pods that do not
    download; HOME on its volume; the API key in the engine's own variable."""
    offline = [{"name": "HF_HUB_OFFLINE", "value": "1"}] if plan.weights.local else []
    key = spec.serving.api_key_secret_ref
    api_key = [secret_env(info.api_key.env, key)] if key is not None else []
    return [*hub_env(spec, token=not plan.weights.local), *offline, *SCRATCH_ENV, *api_key]


def with_user_env(env: list[K8sObject], spec: Gemma4DeploymentSpec) -> list[K8sObject]:
    """The user's env last, one entry per name, the last one winning in the first one's place: a
    user's env overrides ours (e.g. HF_HOME) without a duplicate, which server-side apply refuses
    ("duplicate entries for key [name=...]": env is a list map keyed by name)."""
    merged = [*env, *(e.model_dump(by_alias=True, exclude_none=True) for e in spec.serving.env)]
    last = {e["name"]: e for e in merged}
    out: list[K8sObject] = []
    for e in merged:
        if e["name"] in last:
            out.append(last.pop(e["name"]))
    return out


def cache_mounts(plan: Plan) -> list[K8sObject]:
    """The model cache volume (PVC or emptyDir) where both engines keep downloaded weights; read-only
    when the download Job filled it (serving pods only read)."""
    read_only = {"readOnly": True} if plan.weights.mode is WeightsMode.CACHE else {}
    return [{"name": "cache", "mountPath": CACHE_MOUNT, **read_only}]
