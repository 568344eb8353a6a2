"""LoRA adapters in the API: the facts and messages the CEL rules and their pydantic twins share.

The models themselves (``AdapterSpec``, ``LoraSpec``, ``AdapterStatus``) live in ``api.models`` with the rest of
the schema; this module holds what they are judged by, so the rules read as data.
"""

from __future__ import annotations

from collections.abc import Sequence

# vLLM 0.32's --max-lora-rank ladder: vllm/config/lora.py line 26,
# `MaxLoRARanks = Literal[1, 8, 16, 32, 64, 128, 256, 320, 512]` (any other value fails LoRAConfig's validation).
MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
MAX_ADAPTERS = 16  # adapters per Gemma4Deployment: bounds the CEL rules' cost and the pod's mounts
MAX_ACTIVE_ADAPTERS = 64  # GPU slots; each costs memory on every wrapped layer (status.plan.memoryGiB.lora)
MAX_CACHED_ADAPTERS = 256
ADAPTERS_READY = "AdaptersReady"  # the condition type that follows status.adapters
# Where the serving container finds adapter NAME (under planner.sources.MODEL_MOUNT; render.download mounts it
# there): a PEFT directory for vLLM, and for llama.cpp the GGUF adapter file ADAPTER_GGUF inside it, whatever its
# repository calls it (the download Job links it), so --lora can name it before the Job has run. One definition
# here, the lowest layer: the engines, the planner, render and the CLI all import it.
ADAPTERS_DIR = "/models/adapters"
ADAPTER_GGUF = "adapter.gguf"
# A module suffix as vLLM's --lora-target-modules matches it (vllm/lora/utils.py is_in_target_modules)
TARGET_MODULE_PATTERN = r"^[a-z_][a-z0-9_]*$"
ADAPTER_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # a DNS-1123 label, as for the OpenAI model name

ADAPTER_NAME_MESSAGE = ("must be a DNS-1123 label of at most 63 characters: lowercase letters, digits and '-', "
                        "starting and ending with a letter or digit (clients send it as the OpenAI `model`)")
DUPLICATE_ADAPTER_MESSAGE = ("adapters: each name must be unique: it is the OpenAI `model` a client sends to "
                             "reach that adapter")
BASE_NAME_CLASH_MESSAGE = ("adapters: a name must differ from the base model's served name "
                           "(gemma-4-VARIANT, with -it for instruction-tuned models): clients send that name to "
                           "reach the base model without an adapter")
ADAPTER_URI_MESSAGE = (
    "adapters: every uri must be hf://REPO[@REVISION] (a Hugging Face repo holding the adapter: a PEFT "
    "directory for vLLM, a GGUF adapter file for llama.cpp), pvc://CLAIM/PATH (the adapter on a "
    "PersistentVolumeClaim in this namespace) or oci://REGISTRY/REPO:TAG or oci://REGISTRY/REPO@sha256:DIGEST "
    "(the adapter's files packaged as an OCI artifact)"
)
MAX_RANK_MESSAGE = ("maxRank must be one of vLLM's --max-lora-rank values "
                    f"{', '.join(map(str, MAX_LORA_RANKS))}: use the smallest at or above your adapters' "
                    "rank (r, and every rank_pattern value)")
CACHED_BELOW_ACTIVE_MESSAGE = ("cachedAdapters must be at least maxActiveAdapters: every adapter on the GPU is "
                               "also kept in the host cache (vLLM --max-cpu-loras >= --max-loras)")
LORA_WITHOUT_ADAPTERS_MESSAGE = ("serving.lora sizes the adapter slots of model.adapters: add an adapter to "
                                 "model.adapters or remove serving.lora")


def adapter_dir(name: str) -> str:
    """Where the serving container finds adapter ``name`` (what the engine's flags name)."""
    return f"{ADAPTERS_DIR}/{name}"


def served_model_name(variant: str, instruction_tuned: bool) -> str:
    """The OpenAI `model` of the base model (vLLM --served-model-name, llama.cpp -a): gemma-4-31b-it."""
    return f"gemma-4-{variant}" + ("-it" if instruction_tuned else "")


# The same name in CEL, on ModelSpec (self = spec.model, instructionTuned defaulted by the schema).
SERVED_NAME_CEL = "'gemma-4-' + self.variant + (self.instructionTuned ? '-it' : '')"


def adapter_list_problems(names: Sequence[str], served_name: str) -> list[str]:
    """The pydantic twin of ModelSpec's adapter-name rules: duplicates, then a clash with the base's name."""
    problems = []
    if len(set(names)) != len(names):
        problems.append(DUPLICATE_ADAPTER_MESSAGE)
    if served_name in names:
        problems.append(BASE_NAME_CLASH_MESSAGE)
    return problems


def lora_problems(max_rank: int | None, active: int | None, cached: int | None) -> list[str]:
    """The pydantic twin of LoraSpec's rules, each relative to serving.lora."""
    problems = []
    if max_rank is not None and max_rank not in MAX_LORA_RANKS:
        problems.append(MAX_RANK_MESSAGE)
    if active is not None and cached is not None and cached < active:
        problems.append(CACHED_BELOW_ACTIVE_MESSAGE)
    return problems
