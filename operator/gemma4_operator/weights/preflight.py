"""The adapter preflight: whether a fetched LoRA adapter will serve on this deployment's engine and Gemma 4
variant, judged from its ``adapter_config.json`` and its safetensors header (tensor names and shapes only)
before a GPU is spent; and whether a merged fine-tune's ``config.json`` is the declared variant. Pure: the
download Job (cli/download.py) reads the files, bounded, and hands their contents here.

vLLM 0.32's own rules, from its sources:

* ``vllm/lora/peft_helper.py`` ``PEFTHelper``: ``r``, ``lora_alpha`` and ``target_modules`` are required
  (``from_dict``); ``_validate_features`` refuses ``modules_to_save`` other than ``classifier``/``score``,
  ``use_dora``, ``lora_bias``, an ``init_lora_weights`` that rewrites the base (PiSSA, OLoRA, CorDA, LoftQ:
  any string but gaussian/eva/orthogonal/mica/lora_ga), aLoRA, ``layer_replication``, BD-LoRA, QALoRA;
  ``validate_legal`` refuses ``max(r, *rank_pattern.values()) > max_lora_rank`` and ``bias != "none"``.
* ``vllm/lora/lora_model.py`` ``from_local_checkpoint``: every tensor's module (``lora/utils.py``
  ``parse_fine_tuned_lora_name``, ``base_model.model.`` stripped) must end in a module the model wraps
  (``worker_manager.py`` ``_load_adapter``: the supported modules with the packed ones unpacked, plus
  ``experts``); ``...experts.base_layer`` (PEFT's ``target_parameters`` for fused experts) is skipped there.
* ``vllm/model_executor/models/gemma4_mm.py``: ``hf_to_vllm_mapper`` maps ``model.language_model.`` (and a
  bare ``model``) onto the text stack and ``model.vision_tower`` / ``model.audio_tower.`` /
  ``model.embed_vision`` / ``model.embed_audio.`` onto the towers; ``lora/model_manager.py`` wraps the
  towers only with ``enable_tower_connector_lora``, and without it ignores their LoRA silently. A tensor whose
  module ends in a wrapped name under any other prefix loads nowhere and the adapter serves as the base
  model, silently (vllm-project/vllm#34186).

llama.cpp loads adapters as GGUF only (``--lora FILE``; ``convert_lora_to_gguf.py`` writes them from a PEFT
directory), for the text stack only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gemma4_operator.catalog import VariantInfo

MAX_CONFIG_BYTES = 64 * 1024  # adapter_config.json / config.json: a few KiB in every recipe
MAX_HEADER_BYTES = 16 * 2**20  # safetensors header: ~100 bytes per tensor; a 26B expert LoRA has ~1k tensors
MAX_TARGETS_SHOWN = 8
ACCEPTED = "Accepted"

# vllm/lora/peft_helper.py _validate_features / _init_is_supported
VLLM_MODULES_TO_SAVE = frozenset({"classifier", "score"})
VLLM_INITS = frozenset({"gaussian", "eva", "orthogonal", "mica", "lora_ga"})
REQUIRED = ("r", "lora_alpha", "target_modules")
# The Gemma 4 modules vLLM wraps (gemma4.py: q/k/v packed into qkv_proj, gate/up into gate_up_proj, o_proj,
# down_proj, the fused experts, the MoE router's proj, E2B/E4B's per-layer projections); vLLM compares the module
# name's last part.
TEXT_MODULES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "experts",
                          "proj", "per_layer_input_gate", "per_layer_projection", "per_layer_model_projection"})
# Checkpoint prefixes (after base_model.model.) that gemma4_mm.py's hf_to_vllm_mapper maps.
TEXT_PREFIXES = ("model.language_model.", "model.layers.", "language_model.model.")
TOWER_PREFIXES = ("model.vision_tower.", "model.audio_tower.", "model.embed_vision.", "model.embed_audio.",
                  "vision_tower.", "audio_tower.", "embed_vision.", "embed_audio.")
# Which side of a text module is the hidden size: the input of the projections out of the residual stream,
# the output of those back into it.
HIDDEN_SIDE = {"q_proj": "in", "k_proj": "in", "v_proj": "in", "gate_proj": "in", "up_proj": "in",
               "o_proj": "out", "down_proj": "out"}
LAYER = re.compile(r"\blayers\.(\d+)\.")
# A Gemma 4 repository name says the size: google/gemma-4-31B-it, unsloth/gemma-4-26b-a4b-it-bnb-4bit.
GEMMA4_SIZE = re.compile(r"gemma-?4[-_](e2b|e4b|26b-a4b|31b)(?![a-z0-9])", re.IGNORECASE)
OTHER_FAMILY = re.compile(r"gemma-?[1-37]\b|gemma-?[1-37][-_]|llama|mistral|qwen|phi", re.IGNORECASE)
GEMMA4_ARCHITECTURES = frozenset({"Gemma4ForConditionalGeneration", "Gemma4ForCausalLM"})
MERGE_ADVICE = ("merge it into the base (Unsloth save_pretrained_merged, or PEFT merge_and_unload then "
                "save_pretrained) and serve the merged checkpoint as model.source.uri")
CONVERT = ("convert it with llama.cpp's convert_lora_to_gguf.py ADAPTER_DIR --base BASE_MODEL_DIR --outtype f16 "
           "--outfile {name}.gguf and point the adapter's uri at the .gguf")


class PreflightError(ValueError):
    """A file the preflight cannot read: too large, not JSON, not a safetensors header."""


@dataclass(frozen=True)
class AdapterRules:
    """What the serving engine accepts. ``gguf``: llama.cpp (GGUF adapters, text stack only); otherwise vLLM
    (PEFT directories). ``max_rank``: serving.lora.maxRank (vLLM's --max-lora-rank)."""

    max_rank: int
    gguf: bool = False


@dataclass(frozen=True)
class AdapterFiles:
    """What the download Job read of one adapter: its config and tensor shapes (PEFT), or that it is a GGUF."""

    config: Mapping[str, Any] = field(default_factory=dict)
    tensors: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    gguf_file: str = ""  # the adapter's .gguf, when it is one


@dataclass(frozen=True)
class AdapterVerdict:
    """One adapter's preflight, as status.adapters[] reports it. ``towers``: it adapts the vision or audio
    tower, which vLLM applies only with --enable-tower-connector-lora."""

    name: str
    reason: str  # Accepted | NotLoRA | InvalidConfig | ModulesToSave | DoRA | Bias | Init | Unsupported |
    #              RankTooHigh | BaseMismatch | UnmappedModules | NeedsGGUF | NotGGUF
    message: str
    rank: int | None = None
    target_modules: tuple[str, ...] = ()
    towers: bool = False

    @property
    def accepted(self) -> bool:
        return self.reason == ACCEPTED


def read_json(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object of at most MAX_CONFIG_BYTES (the caller reads one byte more, to tell)."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise PreflightError(f"{what} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise PreflightError(f"{what} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise PreflightError(f"{what} is not a JSON object")
    return data


def header_length(prefix: bytes) -> int:
    """The safetensors header's length, from the file's first 8 bytes (little-endian u64): the file says
    it, so it is bounded before anything is read."""
    if len(prefix) != 8:
        raise PreflightError("adapter_model.safetensors is shorter than its 8-byte header length")
    length = int.from_bytes(prefix, "little")
    if length > MAX_HEADER_BYTES:
        raise PreflightError(f"adapter_model.safetensors declares a {length}-byte header (at most "
                             f"{MAX_HEADER_BYTES} read)")
    return length


def tensor_shapes(header: bytes) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header (``__metadata__`` left out)."""
    try:
        data = json.loads(header)
    except ValueError as error:
        raise PreflightError(f"adapter_model.safetensors has no JSON header: {error}") from None
    if not isinstance(data, dict):
        raise PreflightError("adapter_model.safetensors' header is not a JSON object")
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in data.items():
        if name == "__metadata__":
            continue
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise PreflightError(f"adapter_model.safetensors: tensor {name[:80]!r} has no shape")
        shapes[name] = tuple(shape)
    return shapes


def _module(tensor: str) -> str | None:
    """The module a PEFT tensor adapts, without ``base_model.model.`` (lora/utils.py
    parse_fine_tuned_lora_name); None for a tensor that is not a LoRA factor."""
    name = tensor.removeprefix("base_model.model.")
    parts = name.split(".")
    if parts[-1] == "weight" and parts[-2:-1] in (["lora_A"], ["lora_B"]):
        return ".".join(parts[:-2]).removesuffix(".base_layer")
    if parts[-1] in ("lora_embedding_A", "lora_embedding_B"):
        return ".".join(parts[:-1])
    return None


def _rank(config: Mapping[str, Any]) -> int | None:
    ranks = [config.get("r"), *(config.get("rank_pattern") or {}).values()]
    valid = [r for r in ranks if isinstance(r, int) and not isinstance(r, bool)]
    return max(valid) if len(valid) == len(ranks) and all(r > 0 for r in valid) else None


def _targets(config: Mapping[str, Any], modules: Iterable[str]) -> tuple[str, ...]:
    """The module kinds adapted, as the tensors show them (config's target_modules may be a regex)."""
    kinds = sorted({m.rsplit(".", 1)[-1] for m in modules})
    if not kinds and isinstance(config.get("target_modules"), list):
        kinds = sorted(str(t) for t in config["target_modules"])
    return tuple(kinds)


def _feature_refusal(config: Mapping[str, Any]) -> tuple[str, str] | None:
    """vLLM's _validate_features and bias rule, in words that say what to do."""
    extra = [m for m in config.get("modules_to_save") or () if m not in VLLM_MODULES_TO_SAVE]
    if extra:
        return "ModulesToSave", (f"modules_to_save {extra} trains whole modules, which a LoRA engine cannot "
                                 f"apply: {MERGE_ADVICE}")
    if config.get("use_dora"):
        return "DoRA", f"DoRA (use_dora) is not served by vLLM: retrain with use_dora false, or {MERGE_ADVICE}"
    if config.get("lora_bias") or config.get("bias", "none") != "none":
        return "Bias", f"trained biases (bias/lora_bias) are not served: retrain with bias 'none', or {MERGE_ADVICE}"
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in VLLM_INITS:
        return "Init", (f"init_lora_weights {init!r} changes the base weights: convert it to a plain LoRA with "
                        "PEFT's path_initial_model_for_weight_conversion, or merge it")
    for key, what in (("alora_invocation_tokens", "aLoRA"), ("layer_replication", "layer_replication"),
                      ("use_bdlora", "BD-LoRA"), ("use_qalora", "QALoRA")):
        if config.get(key):
            return "Unsupported", f"{what} adapters are not served by vLLM: {MERGE_ADVICE}"
    return None


def _config_refusal(config: Mapping[str, Any], rules: AdapterRules) -> tuple[str, str] | None:
    peft_type = config.get("peft_type", "LORA")
    if str(peft_type).upper() != "LORA":
        return "NotLoRA", f"adapter_config.json says peft_type {peft_type!r}: only LoRA adapters are served"
    missing = [key for key in REQUIRED if key not in config]
    rank = _rank(config)
    if missing or rank is None:
        return "InvalidConfig", (f"adapter_config.json lacks {', '.join(missing)}" if missing else
                                 "adapter_config.json's r and rank_pattern must be positive integers")
    refused = _feature_refusal(config)
    if refused is not None:
        return refused
    if rank > rules.max_rank:
        return "RankTooHigh", (f"rank {rank} (r and rank_pattern) is above serving.lora.maxRank {rules.max_rank}: "
                               f"raise maxRank to at least {rank}, or retrain with a lower r")
    return None


def _base_refusal(config: Mapping[str, Any], variant: VariantInfo) -> tuple[str, str] | None:
    """The base the adapter was trained on, by name (base_model_name_or_path)."""
    base = str(config.get("base_model_name_or_path") or "")
    size = GEMMA4_SIZE.search(base)
    if size is not None and size.group(1).lower() != variant.name:
        return "BaseMismatch", (f"trained on {base} (Gemma 4 {size.group(1).upper()}), but model.variant is "
                                f"{variant.name}: serve it on a {size.group(1).lower()} deployment")
    if size is None and OTHER_FAMILY.search(base):
        return "BaseMismatch", f"trained on {base}, not on Gemma 4 {variant.hf_name}: it cannot serve on this model"
    return None


def _shape_refusal(tensors: Mapping[str, tuple[int, ...]], variant: VariantInfo) -> tuple[str, str] | None:
    """The tensors' layer indices and hidden-size sides against the variant (a base named vaguely, or not)."""
    layers = [int(found.group(1)) for name in tensors if (found := LAYER.search(name))]
    if layers and max(layers) >= variant.layers:
        return "BaseMismatch", (f"the adapter has layer {max(layers)}, but Gemma 4 {variant.hf_name} has "
                                f"{variant.layers}: it was trained on another model")
    for name, shape in tensors.items():
        module = _module(name) or ""
        kind = module.rsplit(".", 1)[-1]
        if len(shape) != 2 or not module.startswith(TEXT_PREFIXES) or kind not in HIDDEN_SIDE:
            continue
        # lora_A is [r, in], lora_B is [out, r]: the hidden size is the input of HIDDEN_SIDE "in" modules
        side = shape[1] if ".lora_A." in name and HIDDEN_SIDE[kind] == "in" else (
            shape[0] if ".lora_B." in name and HIDDEN_SIDE[kind] == "out" else None)
        if side is not None and side != variant.hidden_size:
            return "BaseMismatch", (f"{name} has width {side}, but Gemma 4 {variant.hf_name}'s hidden size is "
                                    f"{variant.hidden_size}: it was trained on another model")
    return None


def _module_refusal(modules: Iterable[str]) -> tuple[str, str] | None:
    unmapped = []
    for module in sorted(set(modules)):
        text = module.startswith(TEXT_PREFIXES) and module.rsplit(".", 1)[-1] in TEXT_MODULES
        if not text and not module.startswith(TOWER_PREFIXES):
            unmapped.append(module)
    if unmapped:
        shown = ", ".join(unmapped[:3]) + (f" and {len(unmapped) - 3} more" if len(unmapped) > 3 else "")
        return "UnmappedModules", (f"modules {shown} are not Gemma 4 modules the engine wraps (expected "
                                   "model.language_model.layers.N.<q|k|v|o|gate|up|down>_proj): vLLM would refuse "
                                   "or silently ignore them; retrain against a Gemma 4 checkpoint")
    return None


def check_adapter(name: str, files: AdapterFiles, variant: VariantInfo, rules: AdapterRules) -> AdapterVerdict:
    """The preflight of one fetched adapter: Accepted, or a reason and what to do."""
    modules = [m for m in map(_module, files.tensors) if m is not None]
    targets, rank = _targets(files.config, modules), _rank(files.config)
    towers = any(m.startswith(TOWER_PREFIXES) for m in modules)
    if rules.gguf:
        if files.gguf_file:
            return AdapterVerdict(name, ACCEPTED, f"GGUF adapter {files.gguf_file}")
        text_only = (" (llama.cpp adapters are text-only: retrain without vision/audio tower targets first)"
                     if towers else "")
        return AdapterVerdict(name, "NeedsGGUF", "llama.cpp loads GGUF adapters only, and this is a PEFT "
                              f"directory: {CONVERT.format(name=name)}{text_only}", rank, targets, towers)
    if files.gguf_file:
        return AdapterVerdict(name, "NotGGUF", f"{files.gguf_file} is a GGUF adapter, which vLLM does not load: "
                              "point the uri at the PEFT directory (adapter_config.json, adapter_model.safetensors)")
    refused = (_config_refusal(files.config, rules) or _base_refusal(files.config, variant)
               or _module_refusal(modules) or _shape_refusal(files.tensors, variant))
    if refused is None and not modules:
        refused = "InvalidConfig", "adapter_model.safetensors holds no LoRA tensors (lora_A/lora_B)"
    if refused is not None:
        return AdapterVerdict(name, *refused, rank=rank, target_modules=targets, towers=towers)
    note = " (vision/audio tower included: served with --enable-tower-connector-lora)" if towers else ""
    return AdapterVerdict(name, ACCEPTED, f"LoRA rank {rank} on {', '.join(targets[:MAX_TARGETS_SHOWN])}{note}",
                          rank=rank, target_modules=targets, towers=towers)


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    text = config.get("text_config")
    return text if isinstance(text, dict) else config


def check_checkpoint(config: Mapping[str, Any], variant: VariantInfo, repo: str) -> str | None:
    """A merged fine-tune's config.json against model.variant: None when it is the variant, else why not."""
    architectures = [a for a in config.get("architectures") or () if isinstance(a, str)]
    if not GEMMA4_ARCHITECTURES.intersection(architectures):
        return (f"{repo}'s config.json names {', '.join(architectures) or 'no architecture'}, not a Gemma 4 "
                "model: model.source.uri must be a Gemma 4 checkpoint (or a fine-tune merged into one)")
    text = _text_config(config)
    expected = {"num_hidden_layers": variant.layers, "hidden_size": variant.hidden_size,
                "num_experts": variant.experts or None}
    wrong = [f"{key} {text.get(key)} (Gemma 4 {variant.hf_name}: {want})" for key, want in expected.items()
             if text.get(key) != want]
    if wrong:
        return (f"{repo}'s config.json is not Gemma 4 {variant.hf_name}: {'; '.join(wrong)}; set model.variant "
                "to the size it was fine-tuned from")
    return None
