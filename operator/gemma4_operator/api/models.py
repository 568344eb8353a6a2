"""The Gemma4Deployment API (``serving.gemma4.dev/v1alpha1``) as pydantic models.

These models are the single source of truth: the CRD's openAPIV3Schema is generated
from them (``crd.py``), the CLI validates files with them, and the operator parses the
objects it watches with them. Field descriptions become ``kubectl explain`` text, so they
are written for users. Cross-field rules are declared twice on purpose: as CEL
``x-kubernetes-validations`` (so the API server refuses bad objects) and as pydantic
validators with the same messages (so the offline CLI refuses them too); a test checks
that both agree on the example set.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from gemma4_operator.api.adapters import (
    ADAPTER_NAME_MESSAGE,
    ADAPTER_NAME_PATTERN,
    ADAPTER_URI_MESSAGE,
    BASE_NAME_CLASH_MESSAGE,
    CACHED_BELOW_ACTIVE_MESSAGE,
    DUPLICATE_ADAPTER_MESSAGE,
    LORA_WITHOUT_ADAPTERS_MESSAGE,
    MAX_ACTIVE_ADAPTERS,
    MAX_ADAPTERS,
    MAX_CACHED_ADAPTERS,
    MAX_LORA_RANKS,
    MAX_RANK_MESSAGE,
    SERVED_NAME_CEL,
    TARGET_MODULE_PATTERN,
    adapter_list_problems,
    lora_problems,
    served_model_name,
)
from gemma4_operator.api.core_v1 import label_problems, name_problems, shape_problems
from gemma4_operator.api.metric_names import ACCEPTED_METRIC_NAMES
from gemma4_operator.api.problems import (
    QUANTITY_PATTERN,
    cross_field_error,
    field_path,
    shown,
    validation_problems,
)

GROUP = "serving.gemma4.dev"
VERSION = "v1alpha1"
KIND = "Gemma4Deployment"
PLURAL = "gemma4deployments"
SINGULAR = "gemma4deployment"
API_VERSION = f"{GROUP}/{VERSION}"


class Variant(enum.StrEnum):
    E2B = "e2b"
    E4B = "e4b"
    MOE_26B = "26b-a4b"
    DENSE_31B = "31b"


class EngineChoice(enum.StrEnum):
    AUTO = "auto"
    VLLM = "vllm"
    LLAMACPP = "llamacpp"


class QuantizationChoice(enum.StrEnum):
    AUTO = "auto"
    BF16 = "bf16"
    FP8 = "fp8"
    NVFP4 = "nvfp4"
    INT4 = "int4"
    Q8_0 = "q8_0"
    Q4_K_M = "q4_k_m"


class KvCacheDtypeChoice(enum.StrEnum):
    AUTO = "auto"
    BF16 = "bf16"
    FP8 = "fp8"


class SpeculativeDecodingMode(enum.StrEnum):
    AUTO = "auto"
    MTP = "mtp"
    OFF = "off"


class Modality(enum.StrEnum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"


class AccessMode(enum.StrEnum):
    READ_WRITE_ONCE = "ReadWriteOnce"
    READ_WRITE_MANY = "ReadWriteMany"
    READ_ONLY_MANY = "ReadOnlyMany"
    READ_WRITE_ONCE_POD = "ReadWriteOncePod"


class RetainPolicy(enum.StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class AutoscalingBackend(enum.StrEnum):
    OPERATOR = "operator"
    KEDA = "keda"


# Spellings accepted for autoscalingMetricSpecs[].metricName: what the CRD enum admits.
METRIC_NAMES = ACCEPTED_METRIC_NAMES

# Catalog facts repeated as literals because CEL rules cannot read the catalog; each is checked
# equal to catalog/*.yaml by tests/unit/test_api_catalog.py.
_NO_AUDIO_VARIANTS = ("26b-a4b", "31b")  # variants without an audio encoder
_E_SERIES = ("e2b", "e4b")
_E_SERIES_MAX_LEN = 131072  # their context length
_MAX_LEN = 262144  # the longest context of any variant
_UNSERVED_FORMATS = {  # engine -> formats it does not serve (formats.yaml `engines`)
    "vllm": ("q8_0", "q4_k_m"),
    "llamacpp": ("fp8", "nvfp4", "int4"),
}
_UNSERVED_MESSAGES = {
    "vllm": "quantization: q8_0 and q4_k_m are GGUF formats served by llama.cpp; use engine llamacpp or auto",
    "llamacpp": "quantization: fp8, nvfp4 and int4 are vLLM formats; llama.cpp serves bf16, q8_0 or q4_k_m",
}
_GPU_ONLY_ENGINES = ("vllm",)  # engines.yaml devices.cpu false
_NO_GPU_MEMORY_UTILIZATION_ENGINES = ("llamacpp",)  # engines.yaml: no gpu_memory_utilization_flag
GPU_MEMORY_UTILIZATION_DEFAULT = 0.90  # engines.yaml vllm gpu_memory_utilization
_GPU_ONLY_FORMATS = ("fp8", "nvfp4", "int4")  # formats no CPU-capable engine serves
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# oci://: a registry host[:port], a repository path and a tag or sha256 digest (a bare repository would mean
# :latest, which changes under a running Deployment: refused)
_OCI_REFERENCE = (r"oci://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+"
                  r"(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[a-f0-9]{64})")
_HF_REPO = r"hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9._-]+"
_PVC_PATH = r"pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/[^\s]*"
# hf://REPO@REV:QUANT: a git ref cannot hold ':' (git check-ref-format), so the quant tag follows the revision
SOURCE_URI_PATTERN = (r"^(" + _HF_REPO + r"(@[A-Za-z0-9._/-]+)?(:[A-Za-z0-9_.-]+)?|" + _PVC_PATH + "|"
                      + _OCI_REFERENCE + r")$")
# an adapter: no :QUANT (an adapter repo holds one adapter), otherwise as a checkpoint's source
ADAPTER_URI_PATTERN = r"^(" + _HF_REPO + r"(@[A-Za-z0-9._/-]+)?|" + _PVC_PATH + "|" + _OCI_REFERENCE + r")$"
SOURCE_URI_MESSAGE = (
    "source.uri must be hf://REPO[@REVISION] (a Hugging Face repo, e.g. hf://google/gemma-4-E4B-it), "
    "hf://REPO[@REVISION]:GGUF_QUANT (a GGUF repo for llama.cpp, e.g. hf://ggml-org/gemma-4-E4B-it-GGUF:Q4_K_M), "
    "pvc://CLAIM/PATH (weights on a PersistentVolumeClaim in this namespace) or "
    "oci://REGISTRY/REPO:TAG or oci://REGISTRY/REPO@sha256:DIGEST (a catalog checkpoint packaged as an OCI "
    "artifact, mounted as an image volume)"
)
# metadata.name: a DNS-1035 label (it is the Service's name, which must be one) short enough that every
# name derived from it stays a valid 63-character label: NAME is the app.kubernetes.io/instance label value,
# and NAME-download (9 more characters) names a Job whose name is also its pods' job-name label value.
NAME_MAX_LENGTH = 63 - len("-download")
DNS1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
NAMESPACE_MESSAGE = ("metadata.namespace must be a namespace name: at most 63 lowercase letters, digits and '-', "
                     "starting and ending with a letter or digit")
NAME_MESSAGE = (
    f"metadata.name must be a DNS-1035 label of at most {NAME_MAX_LENGTH} characters: lowercase letters, "
    "digits and '-', starting with a letter and ending with a letter or digit (it is the Service name and the "
    "app.kubernetes.io/instance label value, and derived names such as NAME-download, a Job name that is also "
    "a pod label value, must stay within 63 characters)"
)


class CelRule(BaseModel):
    """One ``x-kubernetes-validations`` entry; ``field_path`` is relative to the object."""

    rule: str
    message: str
    field_path: str = ""


def cel_rules(*rules: CelRule) -> dict[str, Any]:
    """json_schema_extra carrying CEL rules into the generated CRD."""
    return {
        "x-kubernetes-validations": [
            {"rule": r.rule, "message": r.message, **({"fieldPath": r.field_path} if r.field_path else {})}
            for r in rules
        ]
    }


class ApiModel(BaseModel):
    """Base: camelCase on the wire, unknown fields refused (the CRD is structural too)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=False, frozen=True)


class SecretKeyRef(ApiModel):
    name: Annotated[str, Field(description="Name of a Secret in the Gemma4Deployment's namespace.",
                               min_length=1, max_length=253)]
    key: Annotated[str, Field(description="Key inside the Secret whose value is the token.",
                              min_length=1, max_length=253)]


class ModelSource(ApiModel):
    # A CEL rule rather than a JSON-schema pattern, so the API server answers with words, not a regex.
    model_config = ConfigDict(json_schema_extra=cel_rules(CelRule(
        rule=f"self.uri.matches(r'{SOURCE_URI_PATTERN}')", message=SOURCE_URI_MESSAGE, field_path=".uri",
    )))

    uri: Annotated[str, Field(
        description=(
            "Where the weights come from, overriding the catalog's checkpoint. "
            "`hf://REPO[@REVISION]` for a Hugging Face repo (vLLM), `hf://REPO[@REVISION]:QUANT` for a GGUF repo "
            "(llama.cpp, e.g. hf://ggml-org/gemma-4-E4B-it-GGUF:Q4_K_M), `pvc://CLAIM/PATH` for weights "
            "already on a PersistentVolumeClaim in this namespace, or `oci://REGISTRY/REPO:TAG` "
            "(or `@sha256:DIGEST`) for the planner's catalog checkpoint packaged as an OCI artifact (the files "
            "`hf download REPO --local-dir .` writes, at the artifact's root): mounted read-only as an image "
            "volume, pulled and cached per node by the container runtime (Kubernetes 1.35+ serves image "
            "volumes by default; the operator refuses oci:// where the API server does not)."
        ),
        max_length=512,
    )]

    @field_validator("uri")
    @classmethod
    def _known_shape(cls, uri: str) -> str:
        """The pydantic twin of the CEL rule (RE2 and Python agree on this pattern; fullmatch so that a
        trailing newline is refused as RE2's $ refuses it)."""
        if re.fullmatch(SOURCE_URI_PATTERN, uri, flags=re.ASCII) is None:
            raise ValueError(f"{SOURCE_URI_MESSAGE}; got {uri!r}")
        return uri

    token_secret_ref: Annotated[SecretKeyRef | None, Field(
        alias="tokenSecretRef",
        description=(
            "Secret holding a Hugging Face token, injected as the HF_TOKEN environment variable through "
            "secretKeyRef. The token never appears in arguments, logs or status. Optional: the google/gemma-4 "
            "repos are not gated."
        ),
    )] = None


class AdapterSpec(ApiModel):
    """One LoRA adapter served on the base model under its own OpenAI model name."""

    name: Annotated[str, Field(
        description=(
            "The OpenAI `model` a client sends to use this adapter (the base model stays reachable under its "
            "served name, gemma-4-VARIANT[-it], which an adapter may not take). A DNS-1123 label, unique among "
            "the adapters; the adapter's files are staged at /models/adapters/NAME."
        ),
        min_length=1, max_length=63, json_schema_extra={"pattern": ADAPTER_NAME_PATTERN},
    )]
    uri: Annotated[str, Field(
        description=(
            "Where the adapter comes from: `hf://REPO[@REVISION]` (a Hugging Face repo: a PEFT directory with "
            "adapter_config.json and adapter_model.safetensors for vLLM, a GGUF adapter for llama.cpp), "
            "`pvc://CLAIM/PATH` (already on a PersistentVolumeClaim in this namespace) or "
            "`oci://REGISTRY/REPO:TAG` (or `@sha256:DIGEST`, the adapter's files packaged as an OCI artifact). "
            "It is fetched with the checkpoint and checked (rank, target modules, base model) before a serving "
            "pod starts; status.adapters says whether it serves and, if not, what to do."
        ),
        min_length=1, max_length=512,
    )]
    token_secret_ref: Annotated[SecretKeyRef | None, Field(
        alias="tokenSecretRef",
        description=("Secret holding a Hugging Face token for a private or gated adapter repo, used only by the "
                     "pods that download (never in arguments, logs or status)."),
    )] = None

    @field_validator("name")
    @classmethod
    def _dns_label(cls, name: str) -> str:
        """The words for the schema's pattern (pydantic would print the regular expression)."""
        if re.fullmatch(ADAPTER_NAME_PATTERN, name, flags=re.ASCII) is None:
            raise ValueError(f"{ADAPTER_NAME_MESSAGE}; got {shown(name, kind=False)}")
        return name


_MODEL_RULES = cel_rules(
    CelRule(rule="self.adapters.all(a, self.adapters.exists_one(b, b.name == a.name))",
            message=DUPLICATE_ADAPTER_MESSAGE, field_path=".adapters"),
    CelRule(rule=f"self.adapters.all(a, a.name != {SERVED_NAME_CEL})",
            message=BASE_NAME_CLASH_MESSAGE, field_path=".adapters"),
    CelRule(rule=f"self.adapters.all(a, a.uri.matches(r'{ADAPTER_URI_PATTERN}'))",
            message=ADAPTER_URI_MESSAGE, field_path=".adapters"),
)


class ModelSpec(ApiModel):
    model_config = ConfigDict(json_schema_extra=_MODEL_RULES)

    variant: Annotated[Variant, Field(description=(
        "Gemma 4 variant: e2b and e4b (dense, per-layer embeddings, text+image+audio, 128K context), "
        "26b-a4b (mixture of experts, 3.8B active, text+image, 256K context) or 31b (dense, text+image, "
        "256K context)."
    ))]
    instruction_tuned: Annotated[bool, Field(
        alias="instructionTuned",
        description="Serve the instruction-tuned (-it) checkpoint; false serves the base pre-trained model.",
    )] = True
    source: Annotated[ModelSource | None, Field(description=(
        "Optional override of the checkpoint the planner picks from its catalog."
    ))] = None
    adapters: Annotated[list[AdapterSpec], Field(
        description=(
            "LoRA adapters served on this base model, each under its own OpenAI model name: a request whose "
            "`model` is an adapter's name runs with that adapter (vLLM), the base's served name runs without. "
            "Their GPU slots come out of the KV cache (status.plan.memoryGiB.lora; serving.lora sizes them). "
            "A merged fine-tune is a checkpoint: use model.source.uri instead."
        ),
        max_length=MAX_ADAPTERS,
    )] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_adapters(self) -> ModelSpec:
        """The pydantic twin of _MODEL_RULES."""
        problems = adapter_list_problems([a.name for a in self.adapters], self.served_name)
        if any(re.fullmatch(ADAPTER_URI_PATTERN, a.uri, flags=re.ASCII) is None for a in self.adapters):
            problems.append(ADAPTER_URI_MESSAGE)
        if problems:
            raise cross_field_error(problems)
        return self

    @property
    def served_name(self) -> str:
        """The base model's OpenAI `model` name."""
        return served_model_name(self.variant.value, self.instruction_tuned)


class AcceleratorSpec(ApiModel):
    model_config = ConfigDict(json_schema_extra=cel_rules(CelRule(
        rule="self.type != 'cpu' || self.count == 0",
        message="accelerator.count must be 0 when accelerator.type is cpu (a CPU pod uses no GPUs)",
        field_path=".count",
    )))

    type: Annotated[str, Field(
        description=(
            "Accelerator type: `auto` (the type present in the cluster with the lowest cost per replica-hour "
            "that fits, at the catalog's indicative prices or the operator's --accelerator-price), `cpu`, or a catalog "
            "type such as nvidia-l4, nvidia-h100-80gb, nvidia-b200, nvidia-gb200 (run `gemma4-operator "
            "accelerators` for the list)."
        ),
        min_length=1, max_length=63,
    )] = "auto"
    count: Annotated[int, Field(
        description="GPUs per replica. 0 lets the planner choose the fewest GPUs that fit.", ge=0, le=16,
    )] = 0


class EnvVar(ApiModel):
    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(description="Environment variable name.", min_length=1)]
    value: Annotated[str | None, Field(description="Literal value.")] = None
    value_from: Annotated[dict[str, Any] | None, Field(
        alias="valueFrom", description="core/v1 EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, ...).",
    )] = None

    @model_validator(mode="after")
    def _check_core_v1_shape(self) -> EnvVar:
        """Free-form in the CRD (extra keys kept), checked here with their paths (api.core_v1)."""
        problems = [f"{key}: unknown field (a core/v1 EnvVar has name, value and valueFrom)"
                    for key in self.model_extra or {}]
        problems += [] if self.value_from is None else shape_problems("valueFrom", self.value_from)
        if problems:
            raise cross_field_error(problems)
        return self


# huggingface_hub reads the token from either name (HF_TOKEN; HUGGING_FACE_HUB_TOKEN, its older spelling)
HF_TOKEN_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
LITERAL_TOKEN_MESSAGE = (
    "serving.env: HF_TOKEN and HUGGING_FACE_HUB_TOKEN must not have a literal value: anyone who can read the "
    "Gemma4Deployment or its pods would read the token; put it in a Secret and name it in "
    "model.source.tokenSecretRef (only the pods that download get it), or use valueFrom.secretKeyRef")
NON_ROOT_MESSAGE = ("runAsNonRoot: true contradicts runAsUser 0 (the kubelet would refuse to start "
                    "the container); set runAsNonRoot false to run as root where the namespace's policy allows it")
_SECURITY_RULES = cel_rules(CelRule(
    rule="!has(self.runAsUser) || self.runAsUser != 0 || !has(self.runAsNonRoot) || !self.runAsNonRoot",
    message=NON_ROOT_MESSAGE, field_path=".runAsNonRoot",
))
_ID_BOUND = 2**31 - 1  # core/v1 user and group IDs are int64, Linux's are 31-bit


class SecurityContextSpec(ApiModel):
    """The serving pods' identity: by default they pass Pod Security "restricted" as a non-root user."""

    model_config = ConfigDict(json_schema_extra=_SECURITY_RULES)

    run_as_user: Annotated[int | None, Field(alias="runAsUser", ge=0, le=_ID_BOUND, description=(
        "UID the engine (and the download Job) runs as. Default 1000: the engine images run as root unless told "
        "otherwise, and every path the engines write is on a volume, so any non-root UID works. 0 (root) needs "
        "runAsNonRoot false and a namespace whose Pod Security level allows it (not restricted)."))] = None
    run_as_group: Annotated[int | None, Field(alias="runAsGroup", ge=0, le=_ID_BOUND, description=(
        "Primary GID of the engine's processes. Default 1000."))] = None
    fs_group: Annotated[int | None, Field(alias="fsGroup", ge=0, le=_ID_BOUND, description=(
        "GID that owns the pod's volumes (the model cache PVC included: the kubelet makes it group-writable for "
        "this GID when the volume's root does not match, fsGroupChangePolicy OnRootMismatch). Default 1000. Set "
        "the GID that can read a pvc:// source's files if they are not world-readable."))] = None
    run_as_non_root: Annotated[bool | None, Field(alias="runAsNonRoot", description=(
        "Whether the kubelet refuses to start a container as UID 0. Default: true unless runAsUser is 0."))] = None
    read_only_root_filesystem: Annotated[bool | None, Field(alias="readOnlyRootFilesystem", description=(
        "Mount the engine container's root filesystem read-only. Default per engine: true for llama.cpp (it "
        "writes only its cache, HOME and /tmp, all on volumes), false for vLLM (its JIT compilers write caches "
        "in places the operator does not control)."))] = None

    @model_validator(mode="after")
    def _root_needs_consent(self) -> SecurityContextSpec:
        """The pydantic twin of the CEL rule."""
        if self.run_as_user == 0 and self.run_as_non_root:
            raise cross_field_error([NON_ROOT_MESSAGE])
        return self


_SPECULATIVE_TOKENS_MESSAGE = ("serving.speculativeDecoding.numSpeculativeTokens has no effect with mode off: "
                               "remove it, or set mode auto or mtp")
_MTP_BASE_MESSAGE = ("serving.speculativeDecoding.mode: mtp needs an instruction-tuned model (model.instructionTuned: "
                     "true): Gemma 4's MTP drafters (google/gemma-4-*-it-assistant) are trained against the -it "
                     "checkpoints; use mode auto or off for a base model")
MAX_SPECULATIVE_TOKENS = 16


class SpeculativeDecodingSpec(ApiModel):
    """Gemma 4's MTP "assistant" drafters as speculative decoding (vLLM --speculative-config)."""

    model_config = ConfigDict(json_schema_extra=cel_rules(CelRule(
        rule="self.mode != 'off' || !has(self.numSpeculativeTokens)",
        message=_SPECULATIVE_TOKENS_MESSAGE, field_path=".numSpeculativeTokens",
    )))

    mode: Annotated[SpeculativeDecodingMode, Field(description=(
        "auto (default): the planner adds the variant's MTP drafter (google/gemma-4-<V>-it-assistant, a small "
        "model that proposes tokens the served model verifies: same output, faster decoding at low batch) where "
        "the engine serves it, the checkpoint is the catalog's -it one, serving.concurrency is low enough for "
        "speculation to pay, and the drafter's weights fit beside the KV cache; status.plan.notes says why it "
        "is on or off. mtp: always use the drafter, or refuse the plan with the reason. off: never."
    ))] = SpeculativeDecodingMode.AUTO
    num_speculative_tokens: Annotated[int | None, Field(
        alias="numSpeculativeTokens",
        description=(
            "Tokens the drafter proposes per step (vLLM's num_speculative_tokens). Unset: the vLLM Gemma 4 "
            "recipe's value for the variant (e2b 2, e4b 4, 26b-a4b 4, 31b 4). More tokens pay on slower targets "
            "and cost more when drafts are rejected."
        ),
        ge=1, le=MAX_SPECULATIVE_TOKENS,
    )] = None
_LORA_RULES = cel_rules(
    CelRule(rule=f"!has(self.maxRank) || self.maxRank in {list(MAX_LORA_RANKS)!r}",
            message=MAX_RANK_MESSAGE, field_path=".maxRank"),
    CelRule(rule=("!has(self.cachedAdapters) || !has(self.maxActiveAdapters) || "
                  "self.cachedAdapters >= self.maxActiveAdapters"),
            message=CACHED_BELOW_ACTIVE_MESSAGE, field_path=".cachedAdapters"),
)


_TargetModule = Annotated[str, Field(min_length=1, max_length=64, pattern=TARGET_MODULE_PATTERN)]


class LoraSpec(ApiModel):
    """How the engine holds model.adapters; every field is derived when omitted (status.plan.lora shows it)."""

    model_config = ConfigDict(json_schema_extra=_LORA_RULES)

    max_rank: Annotated[int | None, Field(alias="maxRank", ge=1, le=MAX_LORA_RANKS[-1], description=(
        "Largest adapter rank the slots hold (vLLM --max-lora-rank: 1, 8, 16, 32, 64, 128, 256, 320 or 512). "
        "Unset: the smallest of these at or above the highest rank among the adapters (16 until they are "
        "read). Slot memory grows linearly with it."))] = None
    max_active_adapters: Annotated[int | None, Field(alias="maxActiveAdapters", ge=1, le=MAX_ACTIVE_ADAPTERS,
                                                     description=(
        "Adapters a replica runs in one batch (vLLM --max-loras): GPU slots preallocated on every wrapped layer "
        "and taken from the KV cache (status.plan.memoryGiB.lora). Requests for more distinct adapters than "
        "slots wait for a swap. Unset: the number of adapters, at most 4."))] = None
    cached_adapters: Annotated[int | None, Field(alias="cachedAdapters", ge=1, le=MAX_CACHED_ADAPTERS,
                                                 description=(
        "Adapters kept in host memory for quick swaps into the GPU slots (vLLM --max-cpu-loras, at least "
        "maxActiveAdapters); their size is added to the pod's memory request. Unset: the number of adapters."
    ))] = None
    target_modules: Annotated[list[_TargetModule] | None, Field(alias="targetModules", max_length=16, description=(
        "Module suffixes that get adapter slots (vLLM --lora-target-modules, e.g. [qkv_proj, o_proj, "
        "gate_up_proj, down_proj]). Unset: every module vLLM supports, which on 26b-a4b includes the experts, "
        "whose slots dominate the adapter memory (status.plan.notes says how much leaving them out saves). "
        "An adapter's weights on other modules are not applied."),
        json_schema_extra={"x-kubernetes-list-type": "set"})] = None

    @model_validator(mode="after")
    def _check_ladder(self) -> LoraSpec:
        """The pydantic twin of _LORA_RULES."""
        problems = lora_problems(self.max_rank, self.max_active_adapters, self.cached_adapters)
        if problems:
            raise cross_field_error(problems)
        return self


class ServingSpec(ApiModel):
    max_model_len: Annotated[int, Field(
        alias="maxModelLen",
        description=(
            "Longest sequence (prompt + output tokens) a request may use. Capped by the variant's context: "
            "131072 for e2b/e4b, 262144 for 26b-a4b/31b."
        ),
        ge=256, le=_MAX_LEN,
    )] = 32768
    concurrency: Annotated[int, Field(
        description=(
            "How many sequences of maxModelLen tokens the KV cache must hold at once. The planner sizes GPUs "
            "so this fits; status.plan.maxConcurrency reports what the chosen hardware actually holds."
        ),
        ge=1, le=1024,
    )] = 4
    kv_cache_dtype: Annotated[KvCacheDtypeChoice, Field(
        alias="kvCacheDtype",
        description=("KV-cache precision. auto: vLLM uses fp8 on GPUs with FP8 support (compute capability 8.9+) "
                     "and bf16 elsewhere (an explicit fp8 is refused below 8.9: the Triton attention Gemma 4 needs "
                     "in vLLM cannot store it there); llama.cpp uses f16 cells, and 8-bit q8_0 cells when f16 does "
                     "not fit."),
    )] = KvCacheDtypeChoice.AUTO
    gpu_memory_utilization: Annotated[float | None, Field(
        alias="gpuMemoryUtilization",
        description=(
            "vLLM's --gpu-memory-utilization: the fraction of each GPU's memory vLLM may take for weights, "
            f"activations and the KV cache. Unset: {GPU_MEMORY_UTILIZATION_DEFAULT:.2f} (vLLM's default and its "
            "Gemma 4 recipe's). The planner fits the plan within this fraction (to two decimals) and renders it, "
            "so a recipe that "
            "raises it can be reproduced; the rest is left to the CUDA context and other processes. vLLM only: "
            "llama-server has no such setting (it allocates what its context needs), so engine llamacpp and "
            "accelerator.type cpu refuse it, and a llama.cpp plan chosen by engine auto ignores it (said in "
            "status.plan.notes)."
        ),
        ge=0.5, le=0.98,
    )] = None
    modalities: Annotated[list[Modality], Field(
        description=(
            "Input modalities to serve. text is always served; image needs the vision encoder; audio exists "
            "only on e2b and e4b. A text-only list lets vLLM skip the encoders (--language-model-only)."
        ),
        min_length=1, max_length=3, json_schema_extra={"x-kubernetes-list-type": "set"},
    )] = Field(default_factory=lambda: [Modality.TEXT, Modality.IMAGE])
    reasoning: Annotated[bool | None, Field(description=(
        "Split the thinking channel from answers (vLLM --reasoning-parser gemma4). Only for "
        "instruction-tuned models; unset means on for -it models and off for base models."
    ))] = None
    tool_calling: Annotated[bool | None, Field(
        alias="toolCalling",
        description=(
            "Enable tool calls (vLLM --enable-auto-tool-choice --tool-call-parser gemma4; llama.cpp --jinja). "
            "Only for instruction-tuned models; unset means on for -it models and off for base models."
        ),
    )] = None
    image: Annotated[str, Field(description="Override the engine container image.", max_length=512)] = ""
    extra_args: Annotated[list[str], Field(
        alias="extraArgs",
        description="Arguments appended verbatim to the engine command line (after the planner's flags).",
        max_length=64,
    )] = Field(default_factory=list)
    env: Annotated[list[EnvVar], Field(description="Extra environment variables for the engine container.",
                                       max_length=64)] = Field(default_factory=list)
    security_context: Annotated[SecurityContextSpec, Field(alias="securityContext", description=(
        "Override the serving pods' non-root identity (UID, GID, fsGroup) and read-only root filesystem. By "
        "default the serving pods and the download Job pass Pod Security \"restricted\": non-root UID 1000, "
        "seccomp RuntimeDefault, no privilege escalation, all capabilities dropped."))] = Field(
        default_factory=SecurityContextSpec)
    api_key_secret_ref: Annotated[SecretKeyRef | None, Field(alias="apiKeySecretRef", description=(
        "Secret key holding an API key the engine's OpenAI endpoint requires (`Authorization: Bearer KEY`), "
        "passed through the environment (never in arguments or status). The health and metrics paths stay "
        "open to the probes and the autoscaler where the engine allows it (vLLM); llama.cpp guards /metrics "
        "with the key too, so it is refused together with autoscaling."))] = None
    speculative_decoding: Annotated[SpeculativeDecodingSpec, Field(alias="speculativeDecoding", description=(
        "Speculative decoding with Gemma 4's MTP drafter checkpoints (vLLM): on where it pays by default "
        "(mode auto); with the built-in autoscaler, status.speculativeDecoding shows the drafts' acceptance "
        "rate."))] = Field(default_factory=SpeculativeDecodingSpec)
    lora: Annotated[LoraSpec | None, Field(description=(
        "LoRA slots for model.adapters: rank, adapters per batch, host cache and target modules. All derived "
        "when omitted."))] = None


class AutoscalingMetricSpec(ApiModel):
    metric_name: Annotated[str, Field(
        alias="metricName",
        description=(
            "Signal to scale on, in Vertex AI spelling: accelerator/duty_cycle, cpu/utilization, request_count, "
            "vllm/num_requests_waiting, vllm/kv_cache_usage_perc or vllm/num_requests_running (the full "
            "aiplatform.googleapis.com/... and vertex_vllm_* spellings are accepted too)."
        ),
        max_length=128, json_schema_extra={"enum": list(METRIC_NAMES)},
    )]
    @field_validator("metric_name")
    @classmethod
    def _known_metric(cls, name: str) -> str:
        if name not in METRIC_NAMES:
            raise ValueError(f"unknown metricName {name!r}; accepted: {', '.join(METRIC_NAMES[:6])} "
                             "(and their aiplatform.googleapis.com/... and vertex_vllm_* spellings)")
        return name

    target: Annotated[int | None, Field(description=(
        "Target value per replica: a percentage for duty cycle, CPU and KV-cache usage (default 60, 60, 80), "
        "a queue length for num_requests_waiting (default 5), requests per minute for request_count and a "
        "batch size for num_requests_running (both required)."
    ), ge=1, le=100000)] = None


# Vertex AI DedicatedResources.ScaleToZeroSpec: both periods [MinValue=300] (5 minutes), [MaxValue=28800] (8 hours)
SCALE_TO_ZERO_MIN_SECONDS = 300
SCALE_TO_ZERO_MAX_SECONDS = 28800
# A Go/CEL duration of whole hours, minutes and seconds ("300s", the protobuf Duration JSON Vertex writes, or "1h30m")
DURATION_PATTERN = r"^([0-9]{1,2}h)?([0-9]{1,3}m)?([0-9]{1,5}s)?$"
_DURATION_PARTS = re.compile(DURATION_PATTERN)


def duration_seconds(text: str) -> int:
    """Seconds in a duration matching :data:`DURATION_PATTERN`; ValueError for anything else."""
    parts = _DURATION_PARTS.match(text)
    if not text or parts is None:
        raise ValueError(f"{text!r} is not a duration such as 300s, 15m or 1h30m")
    hours, minutes, seconds = (int(p[:-1]) if p else 0 for p in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def _period_rule(field: str) -> CelRule:
    return CelRule(
        rule=(f"duration(self.{field}) >= duration('{SCALE_TO_ZERO_MIN_SECONDS}s') && "
              f"duration(self.{field}) <= duration('{SCALE_TO_ZERO_MAX_SECONDS}s')"),
        message=(f"scaleToZeroSpec.{field} must be between 5m ({SCALE_TO_ZERO_MIN_SECONDS}s) and 8h "
                 f"({SCALE_TO_ZERO_MAX_SECONDS}s), Vertex AI's bounds"),
        field_path=f".{field}",
    )


_SCALE_TO_ZERO_RULES = cel_rules(_period_rule("idleScaledownPeriod"), _period_rule("minScaleupPeriod"))
_DURATION_FIELD: dict[str, Any] = {"pattern": DURATION_PATTERN, "min_length": 2, "max_length": 16}


class ScaleToZeroSpec(ApiModel):
    """Vertex AI ``scaleToZeroSpec``: when an idle deployment goes to zero replicas."""

    model_config = ConfigDict(json_schema_extra=_SCALE_TO_ZERO_RULES)

    idle_scaledown_period: Annotated[str, Field(
        alias="idleScaledownPeriod",
        description=(
            "How long no request may be served, running, waiting on any replica or held by the activator before the "
            "deployment scales to zero, e.g. 900s, 15m or 1h30m (5m to 8h). Missing metrics never count as idle."),
        **_DURATION_FIELD,
    )] = "15m"
    min_scaleup_period: Annotated[str, Field(
        alias="minScaleupPeriod",
        description=(
            "After any scale-up (a wake from zero included), no scale-down of any size before this much time "
            "has passed, e.g. 300s or 10m (5m to 8h)."),
        **_DURATION_FIELD,
    )] = "5m"

    @property
    def idle_scaledown_seconds(self) -> int:
        return duration_seconds(self.idle_scaledown_period)

    @property
    def min_scaleup_seconds(self) -> int:
        return duration_seconds(self.min_scaleup_period)

    def period_problems(self) -> list[str]:
        """The pydantic twin of this model's CEL rules (same messages, same order), for AutoscalingSpec's."""
        seconds = (self.idle_scaledown_seconds, self.min_scaleup_seconds)
        rules = _SCALE_TO_ZERO_RULES["x-kubernetes-validations"]
        return [rule["message"] for rule, s in zip(rules, seconds, strict=True)
                if not SCALE_TO_ZERO_MIN_SECONDS <= s <= SCALE_TO_ZERO_MAX_SECONDS]


_AUTOSCALING_RULES = cel_rules(
        CelRule(
            rule="self.minReplicaCount >= 1 || has(self.scaleToZeroSpec)",
            message=("minReplicaCount: 0 (scale to zero) needs scaleToZeroSpec {idleScaledownPeriod, "
                     "minScaleupPeriod}, as in Vertex AI; or use 1 or more"),
            field_path=".minReplicaCount",
        ),
        CelRule(
            rule="!has(self.scaleToZeroSpec) || self.minReplicaCount == 0",
            message="scaleToZeroSpec applies only with minReplicaCount: 0; set minReplicaCount to 0 or remove it",
            field_path=".scaleToZeroSpec",
        ),
        CelRule(
            rule="self.minReplicaCount <= self.maxReplicaCount",
            message="minReplicaCount must not exceed maxReplicaCount",
            field_path=".minReplicaCount",
        ),
        CelRule(
            rule="self.backend != 'keda' || size(self.autoscalingMetricSpecs) > 0",
            message="autoscalingMetricSpecs: backend keda needs at least one entry to build its triggers",
            field_path=".autoscalingMetricSpecs",
        ),
        CelRule(
            rule=("self.autoscalingMetricSpecs.all(m, "
                  "self.autoscalingMetricSpecs.exists_one(n, n.metricName == m.metricName))"),
            message="autoscalingMetricSpecs: at most one entry per metricName",
            field_path=".autoscalingMetricSpecs",
        ),
)


class AutoscalingSpec(ApiModel):
    model_config = ConfigDict(json_schema_extra=_AUTOSCALING_RULES)

    min_replica_count: Annotated[int, Field(
        alias="minReplicaCount",
        description=("Fewest replicas kept running. 0 (scale to zero) needs scaleToZeroSpec: an idle deployment then "
                     "runs no replica, the activator holds the first request and wakes one."),
        ge=0, le=1000,
    )] = 1
    max_replica_count: Annotated[int, Field(
        alias="maxReplicaCount", description="Most replicas the autoscaler may run.", ge=1, le=1000,
    )]
    autoscaling_metric_specs: Annotated[list[AutoscalingMetricSpec], Field(
        alias="autoscalingMetricSpecs",
        description=(
            "Metrics and targets. Scale up when any metric is over its target, down only when all are under "
            "(Vertex AI semantics). Empty means the plan's default, for every engine: vllm/num_requests_waiting at "
            "2 per replica paired with vllm/num_requests_running at 92.5% of a replica's slots (vLLM: status.plan."
            "maxConcurrency; llama.cpp: serving.concurrency): the queue scales up, the requests in flight hold the "
            "count while replicas are busy "
            "(a queue target alone drives replicas to the minimum whenever the queue is empty)."
        ),
        max_length=6,
    )] = Field(default_factory=list)
    scale_down_delay_seconds: Annotated[int, Field(
        alias="scaleDownDelaySeconds",
        description="Scale-down stabilization window: the highest recommendation within it is used.",
        ge=0, le=3600,
    )] = 300
    scale_to_zero_spec: Annotated[ScaleToZeroSpec | None, Field(alias="scaleToZeroSpec", description=(
        "Vertex AI scaleToZeroSpec, required with minReplicaCount 0: how long the deployment must be idle before "
        "it goes to zero (idleScaledownPeriod) and how long any scale-up holds (minScaleupPeriod)."))] = None
    backend: Annotated[AutoscalingBackend, Field(description=(
        "operator: the built-in autoscaler scrapes each pod's /metrics and sets the replicas. keda: the operator "
        "renders a KEDA ScaledObject with equivalent Prometheus triggers and leaves replicas to KEDA."
    ))] = AutoscalingBackend.OPERATOR

    @model_validator(mode="after")
    def _check_bounds(self) -> AutoscalingSpec:
        """The pydantic twin of this model's CEL rules (same messages, same order)."""
        names = [m.metric_name for m in self.autoscaling_metric_specs]
        broken = [
            self.min_replica_count < 1 and self.scale_to_zero_spec is None,
            self.scale_to_zero_spec is not None and self.min_replica_count != 0,
            self.min_replica_count > self.max_replica_count,
            self.backend is AutoscalingBackend.KEDA and not self.autoscaling_metric_specs,
            len(names) != len(set(names)),
        ]
        rules = _AUTOSCALING_RULES["x-kubernetes-validations"]
        problems = [rule["message"] for rule, bad in zip(rules, broken, strict=True) if bad]
        if self.scale_to_zero_spec is not None:
            problems += self.scale_to_zero_spec.period_problems()
        if problems:
            raise cross_field_error(problems)
        return self


class ModelCacheSpec(ApiModel):
    size: Annotated[str, Field(description=(
        "PVC size, e.g. 80Gi. Empty: the checkpoint size plus 20% headroom, rounded up to whole GiB."
    ), pattern=QUANTITY_PATTERN, max_length=32)] = ""
    storage_class_name: Annotated[str, Field(
        alias="storageClassName", description="StorageClass of the PVC; empty uses the cluster default.",
        max_length=253,
    )] = ""
    access_modes: Annotated[list[AccessMode], Field(
        alias="accessModes", description=("PVC access modes. ReadWriteMany lets replicas on several nodes share it; "
                                          "ReadWriteOnce (the default) is refused for more than one replica."),
        min_length=1, max_length=4,
    )] = Field(default_factory=lambda: [AccessMode.READ_WRITE_ONCE])
    retain_policy: Annotated[RetainPolicy, Field(alias="retainPolicy", description=(
        "What happens to the PVC when the Gemma4Deployment is deleted. Retain (the default): it stays, so "
        "re-creating the object reuses the downloaded weights instead of downloading them again; delete it "
        "with `kubectl delete pvc NAME-model-cache`. Delete: it goes with the object (ownerReference)."
    ))] = RetainPolicy.RETAIN


class StorageSpec(ApiModel):
    model_cache: Annotated[ModelCacheSpec | None, Field(
        alias="modelCache",
        description=("A PersistentVolumeClaim NAME-model-cache filled once by a download Job NAME-download "
                     "(`gemma4-operator download` with huggingface_hub, the token from model.source.tokenSecretRef; "
                     "the hf:// adapters of model.adapters too, checked before use) before any serving pod starts; "
                     "serving pods mount it read-only with the Hub offline, so scale-up "
                     "never downloads. A new checkpoint (variant, format, source) runs a new download and the "
                     "Deployment keeps the old one until it succeeds. Without it, every pod downloads into an "
                     "emptyDir sized for the checkpoint. status.model follows the download."),
    )] = None


class PodTemplateMetadata(ApiModel):
    labels: Annotated[dict[str, str], Field(description="Extra labels for the serving pods.")] = Field(
        default_factory=dict)
    annotations: Annotated[dict[str, str], Field(description="Extra annotations for the serving pods.")] = Field(
        default_factory=dict)

    @model_validator(mode="after")
    def _check_syntax(self) -> PodTemplateMetadata:
        """What the API server would refuse on the pods, refused here with the key's path."""
        problems = label_problems("labels", self.labels) + label_problems("annotations", self.annotations,
                                                                          values=False)
        if problems:
            raise cross_field_error(problems)
        return self


class LocalObjectReference(ApiModel):
    name: Annotated[str, Field(description="Name of the referenced object.", min_length=1)]


class PodTemplateSpecOverrides(ApiModel):
    node_selector: Annotated[dict[str, str], Field(alias="nodeSelector",
                                                   description="Extra node selector labels.")] = Field(
        default_factory=dict)
    tolerations: Annotated[list[dict[str, Any]], Field(
        description="Extra core/v1 tolerations (the NVIDIA GPU toleration is added for GPU plans).")] = Field(
        default_factory=list)
    affinity: Annotated[dict[str, Any], Field(description=(
        "core/v1 Affinity. Pod (anti-)affinity is used as given; node affinity terms are combined with the "
        "planner's accelerator requirement."
    ))] = Field(default_factory=dict)
    priority_class_name: Annotated[str, Field(alias="priorityClassName", description="PriorityClass.")] = ""
    service_account_name: Annotated[str, Field(alias="serviceAccountName",
                                               description="ServiceAccount for the serving pods.")] = ""
    image_pull_secrets: Annotated[list[LocalObjectReference], Field(
        alias="imagePullSecrets", description="Secrets for pulling the engine image.")] = Field(
        default_factory=list)
    runtime_class_name: Annotated[str, Field(alias="runtimeClassName",
                                             description="RuntimeClass, e.g. nvidia.")] = ""
    scheduler_name: Annotated[str, Field(alias="schedulerName", description="Scheduler to use.")] = ""

    @model_validator(mode="after")
    def _check_core_v1_shapes(self) -> PodTemplateSpecOverrides:
        """Free-form in the CRD (tolerations, affinity), or only typed as strings (the node selector): checked
        here as the API server checks a pod, with their paths (api.core_v1)."""
        problems = shape_problems("tolerations", self.tolerations) + shape_problems("affinity", self.affinity)
        problems += label_problems("nodeSelector", self.node_selector)
        problems += name_problems({"serviceAccountName": self.service_account_name,
                                   "priorityClassName": self.priority_class_name,
                                   "runtimeClassName": self.runtime_class_name, "schedulerName": self.scheduler_name,
                                   **{f"imagePullSecrets[{i}].name": s.name for i, s in
                                      enumerate(self.image_pull_secrets)}})
        if problems:
            raise cross_field_error(problems)
        return self


class PodTemplateOverrides(ApiModel):
    metadata: Annotated[PodTemplateMetadata, Field(description="Labels and annotations for the pods.")] = Field(
        default_factory=PodTemplateMetadata)
    spec: Annotated[PodTemplateSpecOverrides, Field(description="Scheduling settings for the pods.")] = Field(
        default_factory=PodTemplateSpecOverrides)


_SINGLE_NODE_MODES = ("ReadWriteOnce", "ReadWriteOncePod")  # a volume only one node (or pod) can mount
_GPU_MEMORY_UTILIZATION_MESSAGE = (
    "serving.gpuMemoryUtilization is vLLM's --gpu-memory-utilization; llama.cpp has no such setting (llama-server "
    "allocates what its context needs) and a cpu accelerator is served by llama.cpp: remove it, or use engine vllm "
    "(or auto) on a GPU"
)
_SINGLE_NODE_CACHE_MESSAGE = (
    "storage.modelCache.accessModes: a ReadWriteOnce (or ReadWriteOncePod) cache mounts on one node only, so a second "
    "replica on another node never starts; use [ReadWriteMany] (a StorageClass that offers it) when replicas or "
    "autoscaling.maxReplicaCount is above 1")

_SPEC_RULES = cel_rules(
    CelRule(
        rule=(f"!has(self.storage) || !has(self.storage.modelCache) || "
              f"!self.storage.modelCache.accessModes.exists(m, m in "
              f"{list(_SINGLE_NODE_MODES)!r}) || (self.replicas <= 1 && (!has(self.autoscaling) || "
              "self.autoscaling.maxReplicaCount <= 1))"),
        message=_SINGLE_NODE_CACHE_MESSAGE,
        field_path=".storage.modelCache.accessModes",
    ),
    CelRule(
        rule=f"!(self.model.variant in {list(_NO_AUDIO_VARIANTS)!r}) || !('audio' in self.serving.modalities)",
        message="serving.modalities: audio is only available on e2b and e4b (26b-a4b and 31b have no audio encoder)",
        field_path=".serving.modalities",
    ),
    CelRule(
        rule=f"!(self.model.variant in {list(_E_SERIES)!r}) || self.serving.maxModelLen <= {_E_SERIES_MAX_LEN}",
        message=f"serving.maxModelLen: e2b and e4b have a {_E_SERIES_MAX_LEN}-token context",
        field_path=".serving.maxModelLen",
    ),
    CelRule(
        rule="self.model.instructionTuned || !has(self.serving.reasoning) || !self.serving.reasoning",
        message="serving.reasoning needs an instruction-tuned model (model.instructionTuned: true)",
        field_path=".serving.reasoning",
    ),
    CelRule(
        rule="self.model.instructionTuned || !has(self.serving.toolCalling) || !self.serving.toolCalling",
        message="serving.toolCalling needs an instruction-tuned model (model.instructionTuned: true)",
        field_path=".serving.toolCalling",
    ),
    CelRule(
        rule=("self.model.instructionTuned || !has(self.serving.speculativeDecoding) || "
              "!has(self.serving.speculativeDecoding.mode) || self.serving.speculativeDecoding.mode != 'mtp'"),
        message=_MTP_BASE_MESSAGE,
        field_path=".serving.speculativeDecoding.mode",
    ),
    *(CelRule(
        rule=f"self.accelerator.type != 'cpu' || self.engine != '{engine}'",
        message=(f"engine: {engine} is not planned on cpu (the engine catalog has no {engine} CPU plan for Gemma 4); "
                 "use engine llamacpp (or auto) with accelerator.type cpu"),
        field_path=".engine",
    ) for engine in _GPU_ONLY_ENGINES),
    *(CelRule(
        rule=f"self.engine != '{engine}' || !(self.quantization in {list(formats)!r})",
        message=_UNSERVED_MESSAGES[engine],
        field_path=".quantization",
    ) for engine, formats in _UNSERVED_FORMATS.items()),
    CelRule(
        rule=(f"!has(self.serving) || !has(self.serving.gpuMemoryUtilization) || (self.accelerator.type != 'cpu' && "
              f"!(self.engine in {list(_NO_GPU_MEMORY_UTILIZATION_ENGINES)!r}))"),
        message=_GPU_MEMORY_UTILIZATION_MESSAGE,
        field_path=".serving.gpuMemoryUtilization",
    ),
    CelRule(
        rule=f"self.accelerator.type != 'cpu' || !(self.quantization in {list(_GPU_ONLY_FORMATS)!r})",
        message="quantization: fp8, nvfp4 and int4 need an NVIDIA GPU; on cpu use q4_k_m, q8_0, bf16 or auto",
        field_path=".quantization",
    ),
    CelRule(
        rule=(f"!has(self.serving) || !has(self.serving.env) || self.serving.env.all(e, "
              f"!(e.name in {list(HF_TOKEN_NAMES)!r}) || !has(e.value))"),
        message=LITERAL_TOKEN_MESSAGE,
        field_path=".serving.env",
    ),
    CelRule(
        rule="!has(self.serving) || !has(self.serving.lora) || size(self.model.adapters) > 0",
        message=LORA_WITHOUT_ADAPTERS_MESSAGE,
        field_path=".serving.lora",
    ),
)


class NetworkPolicySpec(ApiModel):
    enabled: Annotated[bool | None, Field(description=(
        "Render a NetworkPolicy NAME that admits ingress to the serving pods' port only from pods in this "
        "namespace, from the operator's namespace (its autoscaler scrapes /metrics) and from ingressFrom. "
        "Unset: the operator's default (Helm value networkPolicy.enabled)."))] = None
    ingress_from: Annotated[list[dict[str, Any]], Field(alias="ingressFrom", max_length=16, description=(
        "Extra core/v1 NetworkPolicyPeers (podSelector, namespaceSelector, ipBlock) allowed to reach the "
        "serving port, e.g. an ingress controller's namespace."))] = Field(default_factory=list)


class RoutingMode(enum.StrEnum):
    STANDALONE = "standalone"
    GATEWAY = "gateway"


class FailureMode(enum.StrEnum):
    FAIL_OPEN = "FailOpen"
    FAIL_CLOSE = "FailClose"


class Scorer(enum.StrEnum):
    PREFIX = "prefix"
    QUEUE = "queue"
    KV_CACHE = "kv-cache"
    LORA_AFFINITY = "lora-affinity"


class GatewayRef(ApiModel):
    name: Annotated[str, Field(description="Name of the Gateway (gateway.networking.k8s.io/v1) the HTTPRoute "
                                           "attaches to.", min_length=1, max_length=253)]
    namespace: Annotated[str, Field(description=(
        "Namespace of the Gateway; empty: this namespace. A Gateway elsewhere must admit routes from this "
        "namespace (its listeners' allowedRoutes)."), max_length=63)] = ""
    section_name: Annotated[str, Field(alias="sectionName", description=(
        "Listener of the Gateway to attach to; empty: every listener that admits the route."), max_length=253)] = ""


_INFERENCE_POOL_RULES = cel_rules(
    CelRule(
        rule="self.mode != 'gateway' || has(self.gatewayRef)",
        message="gatewayRef: mode gateway needs the Gateway to attach the HTTPRoute to",
        field_path=".gatewayRef",
    ),
    CelRule(
        rule="self.mode == 'gateway' || !has(self.gatewayRef)",
        message=("gatewayRef: only mode gateway uses a Gateway; standalone mode serves "
                 "through its own NAME-router Service (remove gatewayRef or set mode gateway)"),
        field_path=".gatewayRef",
    ),
    CelRule(
        rule="self.scorers.all(s, self.scorers.exists_one(t, t == s))",
        message="scorers: each scorer at most once",
        field_path=".scorers",
    ),
)


class InferencePoolRouting(ApiModel):
    """Gateway API Inference Extension routing: an InferencePool over the serving pods and an endpoint picker."""

    model_config = ConfigDict(json_schema_extra=_INFERENCE_POOL_RULES)

    mode: Annotated[RoutingMode, Field(description=(
        "standalone: the endpoint picker with an Envoy sidecar behind a NAME-router Service (port 8081); no "
        "Gateway needed. gateway: an HTTPRoute from gatewayRef to the InferencePool; needs a Gateway API "
        "implementation that supports InferencePool (Istio, kgateway, NGINX Gateway Fabric, GKE, ...)."
    ))] = RoutingMode.STANDALONE
    gateway_ref: Annotated[GatewayRef | None, Field(alias="gatewayRef", description=(
        "The Gateway the HTTPRoute attaches to (mode gateway only)."))] = None
    failure_mode: Annotated[FailureMode, Field(alias="failureMode", description=(
        "What the proxy does when the endpoint picker does not answer: FailClose (default, upstream's) refuses "
        "the request; FailOpen sends it to any ready replica."))] = FailureMode.FAIL_CLOSE
    scorers: Annotated[list[Scorer], Field(description=(
        "Scorers the endpoint picker weighs replicas by: prefix (its prefix-cache index), queue (waiting "
        "requests), kv-cache (KV-cache use), lora-affinity (replicas that hold the request's adapter). Empty: "
        "every scorer whose metric the engine exports (vLLM: prefix, queue, kv-cache, and lora-affinity with "
        "adapters; llama.cpp: prefix and queue). A scorer the engine cannot feed is refused in RoutingReady."
    ), max_length=4)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_gateway(self) -> InferencePoolRouting:
        """The pydantic twin of this model's CEL rules (same messages, same order)."""
        gateway = self.mode is RoutingMode.GATEWAY
        broken = [gateway and self.gateway_ref is None, not gateway and self.gateway_ref is not None,
                  len(self.scorers) != len(set(self.scorers))]
        rules = _INFERENCE_POOL_RULES["x-kubernetes-validations"]
        problems = [rule["message"] for rule, bad in zip(rules, broken, strict=True) if bad]
        if problems:
            raise cross_field_error(problems)
        return self


class RoutingSpec(ApiModel):
    inference_pool: Annotated[InferencePoolRouting | None, Field(alias="inferencePool", description=(
        "Route requests by prefix-cache, queue, KV-cache and LoRA affinity instead of at random: the operator "
        "creates an InferencePool (inference.networking.k8s.io/v1) over the serving pods and an endpoint "
        "picker. Worth it with more than one replica. Absent: off (clients use the NAME Service)."))] = None


class Gemma4DeploymentSpec(ApiModel):
    model_config = ConfigDict(json_schema_extra=_SPEC_RULES)

    model: Annotated[ModelSpec, Field(description="Which Gemma 4 model to serve.")]
    engine: Annotated[EngineChoice, Field(description=(
        "Inference engine. auto: vLLM on NVIDIA GPUs it supports (compute capability 8.0+), llama.cpp for GGUF "
        "formats, CPU, and older GPUs such as the T4."
    ))] = EngineChoice.AUTO
    quantization: Annotated[QuantizationChoice, Field(description=(
        "Weight format. auto picks the cheapest plan (GPUs per replica x price) among formats at the quality "
        "floor (lossless bf16; near-lossless fp8, nvfp4, QAT int4, q8_0), then the format the GPU computes "
        "natively (nvfp4 on Blackwell, fp8 on Hopper/Ada); a lossy format (q4_k_m) only when nothing at the "
        "floor fits, said in status.plan.notes. status.plan.alternatives lists the runners-up and why they lost. "
        "An explicit format is honoured or refused with a reason."
    ))] = QuantizationChoice.AUTO
    accelerator: Annotated[AcceleratorSpec, Field(description="Hardware for each replica.")] = Field(
        default_factory=AcceleratorSpec)
    serving: Annotated[ServingSpec, Field(description="Context length, concurrency and engine features.")] = Field(
        default_factory=ServingSpec)
    replicas: Annotated[int, Field(description=(
        "Replicas when spec.autoscaling is absent; the target of `kubectl scale`. Ignored while autoscaling is set."
    ), ge=0, le=1000)] = 1
    autoscaling: Annotated[AutoscalingSpec | None, Field(description=(
        "Vertex AI DedicatedResources-style autoscaling: replica bounds and metric targets."
    ))] = None
    storage: Annotated[StorageSpec, Field(description="Model cache storage.")] = Field(default_factory=StorageSpec)
    pod_template: Annotated[PodTemplateOverrides, Field(
        alias="podTemplate", description="Pass-through settings for the serving pods.",
    )] = Field(default_factory=PodTemplateOverrides)
    network_policy: Annotated[NetworkPolicySpec | None, Field(alias="networkPolicy", description=(
        "Restrict ingress to the serving pods with a NetworkPolicy (enforced by the cluster's network plugin)."
    ))] = None
    routing: Annotated[RoutingSpec, Field(description=(
        "Request routing in front of the replicas (an InferencePool and an endpoint picker)."
    ))] = Field(default_factory=RoutingSpec)

    @model_validator(mode="after")
    def _check_cross_field(self) -> Gemma4DeploymentSpec:
        """The pydantic twin of _SPEC_RULES, for the offline CLI."""
        variant = self.model.variant
        quant = self.quantization
        modalities = set(self.serving.modalities)
        problems: list[str] = []
        if variant.value in _NO_AUDIO_VARIANTS and Modality.AUDIO in modalities:
            problems.append(_SPEC_RULES_BY_PATH[".serving.modalities"])
        if variant.value in _E_SERIES and self.serving.max_model_len > _E_SERIES_MAX_LEN:
            problems.append(_SPEC_RULES_BY_PATH[".serving.maxModelLen"])
        if not self.model.instruction_tuned and self.serving.reasoning:
            problems.append(_SPEC_RULES_BY_PATH[".serving.reasoning"])
        if not self.model.instruction_tuned and self.serving.tool_calling:
            problems.append(_SPEC_RULES_BY_PATH[".serving.toolCalling"])
        drafting = self.serving.speculative_decoding
        if not self.model.instruction_tuned and drafting.mode is SpeculativeDecodingMode.MTP:
            problems.append(_SPEC_RULES_BY_PATH[".serving.speculativeDecoding.mode"])
        if drafting.mode is SpeculativeDecodingMode.OFF and drafting.num_speculative_tokens is not None:
            problems.append(_SPECULATIVE_TOKENS_MESSAGE)  # the twin of SpeculativeDecodingSpec's CEL rule
        if self._single_node_cache_for_many():
            problems.append(_SINGLE_NODE_CACHE_MESSAGE)
        cpu = self.accelerator.type == "cpu"
        if cpu and self.engine.value in _GPU_ONLY_ENGINES:
            problems.append(_SPEC_RULES_BY_PATH[".engine"])
        if cpu and self.accelerator.count:
            problems.append("accelerator.count must be 0 when accelerator.type is cpu (a CPU pod uses no GPUs)")
        if quant.value in _UNSERVED_FORMATS.get(self.engine.value, ()):
            problems.append(_UNSERVED_MESSAGES[self.engine.value])
        if cpu and quant.value in _GPU_ONLY_FORMATS:
            problems.append(_CPU_FORMAT_MESSAGE)
        if self.serving.gpu_memory_utilization is not None and (
                cpu or self.engine.value in _NO_GPU_MEMORY_UTILIZATION_ENGINES):
            problems.append(_SPEC_RULES_BY_PATH[".serving.gpuMemoryUtilization"])
        if any(e.name in HF_TOKEN_NAMES and e.value is not None for e in self.serving.env):
            problems.append(LITERAL_TOKEN_MESSAGE)
        if self.serving.lora is not None and not self.model.adapters:
            problems.append(LORA_WITHOUT_ADAPTERS_MESSAGE)
        if problems:
            raise cross_field_error(problems)
        return self

    def _single_node_cache_for_many(self) -> bool:
        cache = self.storage.model_cache
        if cache is None or not any(m.value in _SINGLE_NODE_MODES for m in cache.access_modes):
            return False
        return self.replicas > 1 or (self.autoscaling is not None and self.autoscaling.max_replica_count > 1)

    @property
    def reasoning_enabled(self) -> bool:
        return self.model.instruction_tuned if self.serving.reasoning is None else self.serving.reasoning

    @property
    def tool_calling_enabled(self) -> bool:
        return self.model.instruction_tuned if self.serving.tool_calling is None else self.serving.tool_calling


_SPEC_RULE_LIST: list[dict[str, str]] = _SPEC_RULES["x-kubernetes-validations"]
_SPEC_RULES_BY_PATH = {r["fieldPath"]: r["message"] for r in _SPEC_RULE_LIST}
_CPU_FORMAT_MESSAGE = next(r["message"] for r in _SPEC_RULE_LIST if "need an NVIDIA GPU; on cpu" in r["message"])


NAME_RULES = cel_rules(CelRule(
    # size() first: CEL evaluates && left to right, so an over-long name never reaches the regex
    rule=f"self.metadata.name.size() <= {NAME_MAX_LENGTH} && self.metadata.name.matches('{DNS1035_LABEL_PATTERN}')",
    message=NAME_MESSAGE,  # no fieldPath: the schema declares no metadata properties for it to point at
))


class Gemma4Deployment(ApiModel):
    """A whole object as read from a file or the API server."""

    model_config = ConfigDict(extra="ignore")

    api_version: Annotated[Literal["serving.gemma4.dev/v1alpha1"], Field(alias="apiVersion")]
    kind: Literal["Gemma4Deployment"]
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: Gemma4DeploymentSpec

    @model_validator(mode="after")
    def _check_name(self) -> Gemma4Deployment:
        """The pydantic twin of NAME_RULES (the CRD's top-level CEL rule)."""
        name = self.metadata.get("name")
        namespace = self.metadata.get("namespace") or "default"  # unset, null or empty: the default namespace
        problems = []
        if not isinstance(name, str) or len(name) > NAME_MAX_LENGTH or not re.fullmatch(DNS1035_LABEL_PATTERN, name):
            got = "it is missing" if name is None or name == "" else f"got {shown(name, kind=False)}"
            problems.append(f"{NAME_MESSAGE}; {got}")
        if not isinstance(namespace, str) or len(namespace) > 63 or not re.fullmatch(K8S_NAME_PATTERN, namespace):
            problems.append(f"{NAMESPACE_MESSAGE}; got {shown(namespace, kind=False)}")
        if problems:
            raise cross_field_error(problems)
        return self

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "default")


# ---------------------------------------------------------------------------------------
# Status (written by the operator only)
# ---------------------------------------------------------------------------------------


class Condition(ApiModel):
    type: Annotated[str, Field(description=(
        "Planned, ModelReady, AdaptersReady (every adapter of spec.model.adapters fetched, checked and "
        "served), Available, Progressing, Degraded or Ready."))]
    status: Annotated[Literal["True", "False", "Unknown"], Field(description="True, False or Unknown.")]
    reason: Annotated[str, Field(description="CamelCase reason for the last transition.")] = ""
    message: Annotated[str, Field(description="Human-readable detail.")] = ""
    last_transition_time: Annotated[str, Field(alias="lastTransitionTime",
                                               description="When status last changed (RFC 3339).")] = ""
    observed_generation: Annotated[int, Field(alias="observedGeneration",
                                              description="metadata.generation this condition reflects.")] = 0


class _OmitsNone(ApiModel):
    """Serialized without its null fields, so that an object without adapters keeps the status (and the CLI's
    output) it had before status.plan grew its LoRA fields."""

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class PlanMemory(_OmitsNone):
    weights: Annotated[float, Field(description="GiB of weights per GPU (or per pod on CPU).")]
    kv_cache: Annotated[float, Field(alias="kvCache", description="GiB of KV-cache pool per GPU.")]
    overhead: Annotated[float, Field(description="GiB of activations, CUDA graphs and runtime buffers per GPU.")]
    capacity: Annotated[float, Field(description="GiB of memory per GPU (or the CPU pod's memory budget).")]
    lora: Annotated[float | None, Field(description=(
        "GiB of LoRA adapter slots per GPU (serving.lora.maxActiveAdapters x the bytes one slot takes on every "
        "wrapped layer at maxRank, after tensor-parallel sharding), taken from the KV-cache pool. Absent without "
        "adapters (and on llama.cpp, which has no slots)."))] = None


class PlanLora(ApiModel):
    max_rank: Annotated[int, Field(alias="maxRank", description="vLLM --max-lora-rank served.")]
    max_active_adapters: Annotated[int, Field(alias="maxActiveAdapters", description=(
        "GPU adapter slots (vLLM --max-loras)."))]
    cached_adapters: Annotated[int, Field(alias="cachedAdapters", description=(
        "Adapters kept in host memory (vLLM --max-cpu-loras)."))]
    target_modules: Annotated[list[str], Field(alias="targetModules", description=(
        "Module suffixes that get slots; empty: every module the engine supports."))] = Field(default_factory=list)
    host_gib: Annotated[float, Field(alias="hostGiB", description=(
        "GiB of host memory the cached adapters add to the pod's memory request."))] = 0.0


class PlanStatus(_OmitsNone):
    engine: Annotated[str, Field(description="vllm or llamacpp.")]
    image: Annotated[str, Field(description="Engine container image.")]
    checkpoint: Annotated[str, Field(description="Hugging Face repo (and GGUF file) or PVC path served.")]
    quantization: Annotated[str, Field(description="Weight format.")]
    accelerator: Annotated[str, Field(description="Accelerator type, or cpu.")]
    gpus_per_replica: Annotated[int, Field(alias="gpusPerReplica", description="GPUs per replica.")]
    tensor_parallel_size: Annotated[int, Field(alias="tensorParallelSize", description="vLLM tensor parallelism.")]
    max_model_len: Annotated[int, Field(alias="maxModelLen", description="Context length served.")]
    kv_cache_dtype: Annotated[str, Field(alias="kvCacheDtype", description="KV-cache precision.")]
    memory_gib: Annotated[PlanMemory, Field(alias="memoryGiB", description="Memory breakdown per GPU.")]
    max_concurrency: Annotated[int, Field(
        alias="maxConcurrency", description=(
            "The largest serving.concurrency the planner accepts on this hardware (same accelerator, GPU count, "
            "format and KV precision): sequences of maxModelLen tokens the KV budget holds at once, less the "
            "engine's start-up margin."))]
    cost_per_replica_hour: Annotated[float, Field(
        alias="costPerReplicaHour",
        description="Estimated USD per replica-hour: GPUs x the accelerator's price (the catalog's indicative "
                    "on-demand price, or the operator's --accelerator-price). A ranking input, not a bill.")] = 0.0
    alternatives: Annotated[list[str], Field(
        description="Runner-up plans the planner considered and why each lost (cost, quality, native speed).")] = \
        Field(default_factory=list)
    notes: Annotated[list[str], Field(description="Why the planner chose this.")] = Field(default_factory=list)
    drafter: Annotated[str, Field(description=(
        "The MTP drafter checkpoint speculative decoding uses (serving.speculativeDecoding); empty when off."))] = ""
    num_speculative_tokens: Annotated[int, Field(alias="numSpeculativeTokens", description=(
        "Tokens the drafter proposes per step; 0 when speculative decoding is off."))] = 0
    lora: Annotated[PlanLora | None, Field(description=(
        "The LoRA slots in force (serving.lora with what was derived); absent without adapters."))] = None


class MetricStatusEntry(ApiModel):
    metric_name: Annotated[str, Field(alias="metricName", description="Metric as named in the spec.")]
    current: Annotated[float | None, Field(description="Current per-replica value; null when unavailable.")] = None
    target: Annotated[float, Field(description="Target per replica.")]


class RecommendationEntry(ApiModel):
    replicas: Annotated[int, Field(description="Replicas recommended from the metrics (before stabilization).")]
    time: Annotated[str, Field(description="When it was last recommended (RFC 3339).")]


class AutoscalingStatus(ApiModel):
    desired_replicas: Annotated[int, Field(alias="desiredReplicas", description="Last decision.")]
    last_scale_time: Annotated[str, Field(alias="lastScaleTime", description="When replicas last changed.")] = ""
    metrics: Annotated[list[MetricStatusEntry], Field(description="Each metric's current value.")] = Field(
        default_factory=list)
    recommendations: Annotated[list[RecommendationEntry], Field(description=(
        "Built-in autoscaler: the earlier recommendations that still hold a scale-down (within "
        "scaleDownDelaySeconds, each higher than every later one, oldest first; at most 16). Read back "
        "after an operator restart so it neither scales down early nor waits a full window."))] = Field(
        default_factory=list)
    recommended_replicas: Annotated[int | None, Field(alias="recommendedReplicas", description=(
        "Built-in autoscaler: the latest recommendation from the metrics (before stabilization)."))] = None
    idle_since: Annotated[str, Field(alias="idleSince", description=(
        "Built-in autoscaler with scaleToZeroSpec: since when (RFC 3339) no replica served, ran or queued a request "
        "and the activator held none; empty while there is traffic or a metric is missing. The deployment scales to "
        "zero idleScaledownPeriod after it. Written only when it changes; read back after an operator restart."))] = ""
    last_scale_up_time: Annotated[str, Field(alias="lastScaleUpTime", description=(
        "Built-in autoscaler: when replicas were last raised (a wake from zero included); no scale-down before "
        "scaleToZeroSpec.minScaleupPeriod after it. Read back after an operator restart."))] = ""
    scaled_to_zero: Annotated[bool, Field(alias="scaledToZero", description=(
        "True while the autoscaler holds the deployment at zero replicas because it was idle; the Service then "
        "points at the activator, which wakes a replica on the next request."))] = False


class ModelStatus(ApiModel):
    phase: Annotated[Literal["Pending", "Downloading", "Ready", "Failed"], Field(description=(
        "Pending: waiting (for the plan or the first pod); Downloading: the download Job runs (with "
        "storage.modelCache) or pods download at start; Ready: the weights are in place (the Job succeeded, or a "
        "serving pod loaded them); Failed: the download failed, condition ModelReady says why."))]
    mode: Annotated[str, Field(description=(
        "How the weights reach the pods: hub (each pod downloads at start), cache (the download Job filled "
        "the cache PVC once), volume (pvc:// source), image (oci:// image volume)."))] = ""
    source: Annotated[str, Field(description="Where the weights come from: the repository or URI.")] = ""
    checkpoint: Annotated[str, Field(description="The checkpoint served (repository and file).")] = ""
    bytes: Annotated[int, Field(description="Expected download size in bytes (the catalog's).")] = 0
    started_at: Annotated[str, Field(alias="startedAt", description="When the download started (RFC 3339).")] = ""
    finished_at: Annotated[str, Field(alias="finishedAt", description="When it finished (RFC 3339).")] = ""
    throughput_mbps: Annotated[float | None, Field(alias="throughputMBps", description=(
        "Measured download rate in MB/s, when known."))] = None


class SpeculativeDecodingStatus(ApiModel):
    acceptance_rate: Annotated[float | None, Field(alias="acceptanceRate", description=(
        "Accepted draft tokens / proposed draft tokens over the last window, summed over the serving pods (the "
        "engine's counters); null until enough drafts were proposed to tell."))] = None
    draft_tokens: Annotated[int, Field(alias="draftTokens", description=(
        "Draft tokens proposed in the window the rate covers."))] = 0
    window_seconds: Annotated[int, Field(alias="windowSeconds", description=(
        "Seconds of engine counters the rate covers."))] = 0
    state: Annotated[Literal["Measuring", "Effective", "Ineffective"], Field(description=(
        "Measuring: too few drafts yet; Effective: the rate is at or above the threshold; Ineffective: below it for "
        "the whole window (condition Degraded, reason SpeculativeDecodingIneffective, says to turn it off)."))] = \
        "Measuring"
class AdapterStatus(ApiModel):
    name: Annotated[str, Field(description="The adapter's name (spec.model.adapters[].name).")]
    phase: Annotated[Literal["Pending", "Downloading", "Ready", "Refused", "Failed"], Field(description=(
        "Pending: not fetched yet; Downloading: being fetched; Ready: fetched, checked and served; Refused: the "
        "check found something the engine cannot serve (reason says what to do; the other adapters still "
        "serve); Failed: the fetch failed."))]
    rank: Annotated[int | None, Field(description=(
        "The adapter's LoRA rank (r, or the highest rank_pattern value), once read."))] = None
    target_modules: Annotated[list[str], Field(alias="targetModules", description=(
        "The modules the adapter trains, as its adapter_config.json names them."))] = Field(default_factory=list)
    reason: Annotated[str, Field(description="Why it is not Ready, and what to do.")] = ""


class Gemma4DeploymentStatus(ApiModel):
    observed_generation: Annotated[int, Field(alias="observedGeneration",
                                              description="metadata.generation last reconciled.")] = 0
    phase: Annotated[Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"] | None, Field(
        description="Pending, Progressing, Ready, Degraded or Failed.")] = None
    conditions: Annotated[list[Condition], Field(description="Planned, Available, Progressing, Degraded, Ready.",
                                                 json_schema_extra={"x-kubernetes-list-type": "map",
                                                                    "x-kubernetes-list-map-keys": ["type"]})] = Field(
        default_factory=list)
    plan: Annotated[PlanStatus | None, Field(description="The serving plan in force.")] = None
    replicas: Annotated[int, Field(description="Serving pods (for the scale subresource).")] = 0
    ready_replicas: Annotated[int, Field(alias="readyReplicas", description="Ready serving pods.")] = 0
    selector: Annotated[str, Field(description="Label selector of the serving pods (for the scale subresource).")] = ""
    endpoint: Annotated[str, Field(description=(
        "In-cluster OpenAI-compatible base URL clients use: the Service NAME, or NAME-router once standalone "
        "routing (spec.routing.inferencePool) is ready; in gateway mode clients call the Gateway."))] = ""
    gpus: Annotated[str, Field(description="GPUs per replica for display, e.g. 2x h100-80gb.")] = ""
    ready: Annotated[str, Field(description="Ready and desired replicas for display, e.g. 2/3.")] = ""
    autoscaling: Annotated[AutoscalingStatus | None, Field(description="Autoscaler state.")] = None
    model: Annotated[ModelStatus | None, Field(description=(
        "The weights: how they reach the pods and the download's progress (condition ModelReady)."))] = None
    speculative_decoding: Annotated[SpeculativeDecodingStatus | None, Field(alias="speculativeDecoding", description=(
        "The MTP drafter's acceptance rate, while the plan uses speculative decoding (read by the built-in "
        "autoscaler's loop: autoscaling.backend operator)."))] = None
    adapters: Annotated[list[AdapterStatus] | None, Field(description=(
        "Each LoRA adapter of spec.model.adapters: its phase, rank, target modules and, when it does not serve, "
        "why (condition AdaptersReady)."),
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]})] = None
    adapters_ready: Annotated[str | None, Field(alias="adaptersReady", description=(
        "Adapters serving and declared for display, e.g. 2/3; absent without adapters."))] = None

__all__ = [
    "ADAPTER_URI_PATTERN",
    "API_VERSION",
    "DNS1035_LABEL_PATTERN",
    "DURATION_PATTERN",
    "GROUP",
    "HF_TOKEN_NAMES",
    "K8S_NAME_PATTERN",
    "KIND",
    "LITERAL_TOKEN_MESSAGE",
    "METRIC_NAMES",
    "NAMESPACE_MESSAGE",
    "NAME_MAX_LENGTH",
    "NAME_MESSAGE",
    "NAME_RULES",
    "NON_ROOT_MESSAGE",
    "PLURAL",
    "SCALE_TO_ZERO_MAX_SECONDS",
    "SCALE_TO_ZERO_MIN_SECONDS",
    "SINGULAR",
    "SOURCE_URI_MESSAGE",
    "SOURCE_URI_PATTERN",
    "VERSION",
    "AcceleratorSpec",
    "AccessMode",
    "AdapterSpec",
    "AdapterStatus",
    "ApiModel",
    "AutoscalingBackend",
    "AutoscalingMetricSpec",
    "AutoscalingSpec",
    "AutoscalingStatus",
    "CelRule",
    "Condition",
    "EngineChoice",
    "EnvVar",
    "FailureMode",
    "GatewayRef",
    "Gemma4Deployment",
    "Gemma4DeploymentSpec",
    "Gemma4DeploymentStatus",
    "InferencePoolRouting",
    "KvCacheDtypeChoice",
    "LocalObjectReference",
    "LoraSpec",
    "MetricStatusEntry",
    "Modality",
    "ModelCacheSpec",
    "ModelSource",
    "ModelSpec",
    "ModelStatus",
    "NetworkPolicySpec",
    "PlanLora",
    "PlanMemory",
    "PlanStatus",
    "PodTemplateMetadata",
    "PodTemplateOverrides",
    "PodTemplateSpecOverrides",
    "QuantizationChoice",
    "RecommendationEntry",
    "RetainPolicy",
    "RoutingMode",
    "RoutingSpec",
    "ScaleToZeroSpec",
    "Scorer",
    "SecretKeyRef",
    "SecurityContextSpec",
    "ServingSpec",
    "SpeculativeDecodingMode",
    "SpeculativeDecodingSpec",
    "SpeculativeDecodingStatus",
    "StorageSpec",
    "Variant",
    "cel_rules",
    "cross_field_error",
    "duration_seconds",
    "field_path",
    "validation_problems",
]
