"""Adapters shaped like what the Gemma 4 fine-tuning recipes save (adapter_config.json and the safetensors
tensor names and shapes; a few layers each, zero weights where files are written), for the preflight's unit
tests and the tools tier's comparison with vLLM's own validator. Each recipe's shape follows what it saves:

* Unsloth's Gemma 4 notebooks: PEFT directory, r 16, the seven projections, tensors under
  ``base_model.model.model.language_model.layers.N``; base ``unsloth/gemma-4-31b-it-unsloth-bnb-4bit``.
* Axolotl ``examples/gemma4`` text-only QLoRA: ``lora_target_modules`` as a regex over the language model;
  the 26B-A4B MoE QLoRA adds ``lora_target_parameters`` for the fused experts (PEFT ``target_parameters``),
  saved as ``...experts.base_layer.lora_A/B`` (gate_up_proj) and ``...experts.lora_A/B`` (down_proj).
* Google's cookbook QLoRA (``huggingface_text_finetune_qlora``): ``modules_to_save: [lm_head, embed_tokens]``.
* ``target_modules: all-linear`` on the multimodal class: the vision tower's projections too.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemma4_operator.weights.preflight import AdapterFiles

PROJECTIONS = {"self_attn": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}
TEXT = "base_model.model.model.language_model.layers"


@dataclass(frozen=True)
class Recipe:
    """An adapter, the variant and maxRank it is served with, and the verdict the preflight must give."""

    name: str
    variant: str
    config: Mapping[str, Any]
    tensors: Mapping[str, tuple[int, ...]]
    expected: str  # the preflight's reason on vLLM
    max_rank: int = 64
    # vLLM 0.32's own validator (PEFTHelper.validate_legal and the module-name check) refuses it too
    vllm_refuses: bool = False
    note: str = field(default="", compare=False)

    def files(self) -> AdapterFiles:
        return AdapterFiles(config=self.config, tensors=self.tensors)


def _config(base: str, r: int = 16, targets: Any = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                     "down_proj"), **extra: Any) -> dict[str, Any]:
    return {"peft_type": "LORA", "base_model_name_or_path": base, "r": r, "lora_alpha": r,
            "target_modules": list(targets) if isinstance(targets, tuple) else targets, "bias": "none",
            "lora_dropout": 0.0, "modules_to_save": None, "use_dora": False, "use_rslora": False,
            "init_lora_weights": True, "task_type": "CAUSAL_LM", **extra}


def _linear(prefix: str, hidden: int, inner: int, r: int, layers: tuple[int, ...],
            blocks: Mapping[str, tuple[str, ...]] = PROJECTIONS) -> dict[str, tuple[int, ...]]:
    """lora_A [r, in] and lora_B [out, r] of each projection; ``inner`` stands for every non-hidden side."""
    tensors: dict[str, tuple[int, ...]] = {}
    for layer in layers:
        for block, names in blocks.items():
            for name in names:
                into, out = (inner, hidden) if name in ("o_proj", "down_proj") else (hidden, inner)
                base = f"{prefix}.{layer}.{block}.{name}"
                tensors[f"{base}.lora_A.weight"] = (r, into)
                tensors[f"{base}.lora_B.weight"] = (out, r)
    return tensors


def _experts(layers: tuple[int, ...], hidden: int, r: int) -> dict[str, tuple[int, ...]]:
    tensors: dict[str, tuple[int, ...]] = {}
    for layer in layers:
        base = f"{TEXT}.{layer}.experts"
        tensors |= {f"{base}.base_layer.lora_A.weight": (r * 128, hidden),
                    f"{base}.base_layer.lora_B.weight": (2 * 704, r * 128),
                    f"{base}.lora_A.weight": (r * 128, 704), f"{base}.lora_B.weight": (hidden, r * 128)}
    return tensors


UNSLOTH_31B = Recipe("unsloth-31b", "31b", _config("unsloth/gemma-4-31b-it-unsloth-bnb-4bit"),
                     _linear(TEXT, 5376, 256, 16, (0, 59)), "Accepted", max_rank=16)
AXOLOTL_TEXT_REGEX = Recipe(
    "axolotl-text-regex", "31b",
    _config("google/gemma-4-31B-it", r=32,
            targets=r"model.language_model.layers.[\d]+.(mlp|self_attn).(up|down|gate|q|k|v|o)_proj"),
    _linear(TEXT, 5376, 256, 32, (0, 30, 59)), "Accepted", max_rank=32)
AXOLOTL_26B_EXPERTS = Recipe(
    "axolotl-26b-experts", "26b-a4b",
    _config("google/gemma-4-26B-A4B-it", targets=("q_proj", "k_proj", "v_proj", "o_proj"),
            target_parameters=["experts.gate_up_proj", "experts.down_proj"]),
    _linear(TEXT, 2816, 256, 16, (0, 29), {"self_attn": PROJECTIONS["self_attn"]}) | _experts((0, 29), 2816, 16),
    "Accepted")
COOKBOOK_MODULES_TO_SAVE = Recipe(
    "cookbook-qlora", "e4b",
    _config("google/gemma-4-E4B-it", targets="all-linear", modules_to_save=["lm_head", "embed_tokens"]),
    # the saved lm_head and embed_tokens are [262144, 2560]; a 1024-row vocabulary keeps the written file small
    _linear(TEXT, 2560, 256, 16, (0, 41)) | {"base_model.model.lm_head.weight": (1024, 2560),
                                            "base_model.model.model.language_model.embed_tokens.weight": (1024, 2560)},
    "ModulesToSave", vllm_refuses=True)
ALL_LINEAR_VISION = Recipe(
    "all-linear-vision", "e4b", _config("google/gemma-4-E4B-it", targets="all-linear"),
    _linear(TEXT, 2560, 256, 16, (0, 41))
    | _linear("base_model.model.model.vision_tower.encoder.layers", 768, 64, 16, (0, 15)),
    "Accepted", note="served with --enable-tower-connector-lora")
DORA = Recipe("dora", "31b", _config("google/gemma-4-31B-it", use_dora=True),
              _linear(TEXT, 5376, 256, 16, (0,)) | {f"{TEXT}.0.self_attn.q_proj.lora_magnitude_vector": (256,)},
              "DoRA", vllm_refuses=True)
RANK_ABOVE_MAX = Recipe("rank-64", "31b", _config("google/gemma-4-31B-it", r=16, rank_pattern={"q_proj": 64}),
                        _linear(TEXT, 5376, 256, 16, (0,)), "RankTooHigh", max_rank=32, vllm_refuses=True)
MISMATCHED_BASE = Recipe("e4b-on-31b", "31b", _config("google/gemma-4-E4B-it"),
                         _linear(TEXT, 2560, 256, 16, (0, 41)), "BaseMismatch")
FOREIGN_MODULES = Recipe("gpt2-style", "31b", _config("", targets=("c_attn",)),
                         {"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight": (16, 5376),
                          "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight": (768, 16)},
                         "UnmappedModules", vllm_refuses=True)

RECIPES = (UNSLOTH_31B, AXOLOTL_TEXT_REGEX, AXOLOTL_26B_EXPERTS, COOKBOOK_MODULES_TO_SAVE, ALL_LINEAR_VISION, DORA,
           RANK_ABOVE_MAX, MISMATCHED_BASE, FOREIGN_MODULES)


def safetensors_bytes(tensors: Mapping[str, tuple[int, ...]], dtype: str = "BF16") -> bytes:
    """A safetensors file of zeros with these shapes (the format: u64 header length, JSON header, data)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors.items():
        size = 2
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def write_adapter(recipe: Recipe, directory: Path) -> Path:
    """The recipe as a PEFT directory (adapter_config.json, adapter_model.safetensors)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps(recipe.config), encoding="utf-8")
    (directory / "adapter_model.safetensors").write_bytes(safetensors_bytes(recipe.tensors))
    return directory
