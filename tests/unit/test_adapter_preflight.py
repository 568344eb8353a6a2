"""The adapter preflight (weights/preflight.py) on adapters shaped like the Gemma 4 recipes
(tests/support/adapter_recipes.py), the bounded reading of their files, and the merged fine-tune's config check."""

from __future__ import annotations

import struct

import pytest

from gemma4_operator.catalog import VariantInfo, load_catalog
from gemma4_operator.weights.preflight import (
    MAX_HEADER_BYTES,
    AdapterFiles,
    AdapterRules,
    PreflightError,
    check_adapter,
    check_checkpoint,
    header_length,
    read_json,
    tensor_shapes,
)
from tests.support.adapter_recipes import (
    ALL_LINEAR_VISION,
    AXOLOTL_26B_EXPERTS,
    COOKBOOK_MODULES_TO_SAVE,
    MISMATCHED_BASE,
    RANK_ABOVE_MAX,
    RECIPES,
    UNSLOTH_31B,
    Recipe,
    safetensors_bytes,
)


def variant(name: str) -> VariantInfo:
    return load_catalog().variants[name]


def vllm(recipe: Recipe) -> AdapterRules:
    return AdapterRules(max_rank=recipe.max_rank)


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_each_recipe_gets_its_verdict_on_vllm(recipe: Recipe) -> None:
    verdict = check_adapter(recipe.name, recipe.files(), variant(recipe.variant), vllm(recipe))
    assert (verdict.name, verdict.reason) == (recipe.name, recipe.expected), verdict.message
    assert verdict.accepted is (recipe.expected == "Accepted")


def test_an_accepted_adapter_reports_its_rank_and_target_modules() -> None:
    verdict = check_adapter("u", UNSLOTH_31B.files(), variant("31b"), vllm(UNSLOTH_31B))
    assert verdict.rank == 16
    assert verdict.target_modules == ("down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj")
    assert not verdict.towers


def test_the_26b_expert_adapter_lists_the_experts_among_its_targets() -> None:
    verdict = check_adapter("x", AXOLOTL_26B_EXPERTS.files(), variant("26b-a4b"), vllm(AXOLOTL_26B_EXPERTS))
    assert "experts" in verdict.target_modules


def test_the_cookbook_adapter_is_told_to_merge_and_serve_as_the_source() -> None:
    verdict = check_adapter("c", COOKBOOK_MODULES_TO_SAVE.files(), variant("e4b"), vllm(COOKBOOK_MODULES_TO_SAVE))
    assert "['lm_head', 'embed_tokens']" in verdict.message
    assert "save_pretrained_merged" in verdict.message and "model.source.uri" in verdict.message


def test_a_vision_tower_adapter_serves_on_vllm_with_the_tower_flag() -> None:
    verdict = check_adapter("v", ALL_LINEAR_VISION.files(), variant("e4b"), vllm(ALL_LINEAR_VISION))
    assert verdict.accepted and verdict.towers
    assert "--enable-tower-connector-lora" in verdict.message


def test_a_rank_above_max_rank_names_the_rank_and_the_setting() -> None:
    verdict = check_adapter("r", RANK_ABOVE_MAX.files(), variant("31b"), AdapterRules(max_rank=32))
    assert verdict.rank == 64
    assert "rank 64" in verdict.message and "serving.lora.maxRank 32" in verdict.message


def test_a_base_named_for_another_size_names_both() -> None:
    verdict = check_adapter("m", MISMATCHED_BASE.files(), variant("31b"), vllm(MISMATCHED_BASE))
    assert "gemma-4-E4B-it" in verdict.message and "e4b deployment" in verdict.message


def test_a_base_named_vaguely_is_caught_by_its_shapes() -> None:
    config = {**MISMATCHED_BASE.config, "base_model_name_or_path": "/content/outputs/merged"}
    verdict = check_adapter("m", AdapterFiles(config, MISMATCHED_BASE.tensors), variant("31b"), AdapterRules(64))
    assert verdict.reason == "BaseMismatch"
    assert "layer 41" in verdict.message or "2560" in verdict.message


def test_a_hidden_size_mismatch_within_the_layer_count_is_caught() -> None:
    tensors = {name: shape for name, shape in MISMATCHED_BASE.tensors.items() if ".layers.0." in name}
    config = {**MISMATCHED_BASE.config, "base_model_name_or_path": ""}
    verdict = check_adapter("m", AdapterFiles(config, tensors), variant("31b"), AdapterRules(64))
    assert verdict.reason == "BaseMismatch" and "hidden size is 5376" in verdict.message


def test_module_names_without_the_language_model_prefix_that_vllm_would_ignore_are_refused() -> None:
    # the silent failure of vllm-project/vllm#34186: q_proj is wrapped, but language_model.layers maps nowhere
    tensors = {name.replace("model.model.language_model", "model.language_model"): shape
               for name, shape in UNSLOTH_31B.tensors.items()}
    verdict = check_adapter("s", AdapterFiles(UNSLOTH_31B.config, tensors), variant("31b"), AdapterRules(16))
    assert verdict.reason == "UnmappedModules"
    assert "language_model.layers.0.mlp.down_proj" in verdict.message and "more" in verdict.message


@pytest.mark.parametrize(("extra", "reason", "words"), [
    ({"peft_type": "IA3"}, "NotLoRA", "only LoRA"),
    ({"bias": "all"}, "Bias", "bias 'none'"),
    ({"lora_bias": True}, "Bias", "bias 'none'"),
    ({"init_lora_weights": "pissa"}, "Init", "path_initial_model_for_weight_conversion"),
    ({"init_lora_weights": "gaussian"}, "Accepted", "rank 16"),
    ({"layer_replication": [[0, 4]]}, "Unsupported", "layer_replication"),
    ({"modules_to_save": ["score"]}, "Accepted", "rank 16"),
    ({"r": 0}, "InvalidConfig", "positive integers"),
    ({"rank_pattern": {"q_proj": "8"}}, "InvalidConfig", "positive integers"),
])
def test_vllm_s_feature_rules(extra: dict[str, object], reason: str, words: str) -> None:
    files = AdapterFiles({**UNSLOTH_31B.config, **extra}, UNSLOTH_31B.tensors)
    verdict = check_adapter("a", files, variant("31b"), AdapterRules(16))
    assert verdict.reason == reason and words in verdict.message


def test_a_config_without_the_required_keys_names_them() -> None:
    config = {k: v for k, v in UNSLOTH_31B.config.items() if k != "lora_alpha"}
    verdict = check_adapter("a", AdapterFiles(config, UNSLOTH_31B.tensors), variant("31b"), AdapterRules(16))
    assert (verdict.reason, verdict.message) == ("InvalidConfig", "adapter_config.json lacks lora_alpha")


def test_llama_cpp_refuses_a_peft_directory_with_the_conversion_command() -> None:
    verdict = check_adapter("fr", UNSLOTH_31B.files(), variant("31b"), AdapterRules(16, gguf=True))
    assert verdict.reason == "NeedsGGUF"
    assert "convert_lora_to_gguf.py ADAPTER_DIR --base BASE_MODEL_DIR" in verdict.message
    assert "--outfile fr.gguf" in verdict.message


def test_llama_cpp_refuses_tower_targets_as_text_only() -> None:
    verdict = check_adapter("v", ALL_LINEAR_VISION.files(), variant("e4b"), AdapterRules(16, gguf=True))
    assert verdict.reason == "NeedsGGUF" and "text-only" in verdict.message


def test_llama_cpp_takes_a_gguf_and_vllm_refuses_one() -> None:
    files = AdapterFiles(gguf_file="adapter.gguf")
    assert check_adapter("g", files, variant("e2b"), AdapterRules(16, gguf=True)).accepted
    assert check_adapter("g", files, variant("e2b"), AdapterRules(16)).reason == "NotGGUF"


def test_the_safetensors_header_gives_names_and_shapes() -> None:
    raw = safetensors_bytes({"a.lora_A.weight": (16, 64)})
    length = header_length(raw[:8])
    assert tensor_shapes(raw[8:8 + length]) == {"a.lora_A.weight": (16, 64)}


def test_a_header_length_beyond_the_bound_is_refused_before_reading() -> None:
    with pytest.raises(PreflightError, match="declares a 17179869184-byte header"):
        header_length(struct.pack("<Q", 16 * 2**30))
    assert header_length(struct.pack("<Q", MAX_HEADER_BYTES)) == MAX_HEADER_BYTES
    with pytest.raises(PreflightError, match="shorter than its 8-byte"):
        header_length(b"\x01")


@pytest.mark.parametrize(("header", "words"), [
    (b"\xff", "no JSON header"), (b"[]", "not a JSON object"), (b'{"t": {"shape": [1, -2]}}', "has no shape"),
    (b'{"t": 3}', "has no shape"),
])
def test_a_malformed_header_is_refused_in_words(header: bytes, words: str) -> None:
    with pytest.raises(PreflightError, match=words):
        tensor_shapes(header)


def test_a_config_file_is_bounded_and_must_be_an_object() -> None:
    with pytest.raises(PreflightError, match="larger than 65536 bytes"):
        read_json(b" " * 65537, "adapter_config.json")
    with pytest.raises(PreflightError, match="not a JSON object"):
        read_json(b"[1]", "adapter_config.json")
    with pytest.raises(PreflightError, match=r"adapter_config\.json is not JSON"):
        read_json(b"{", "adapter_config.json")


GEMMA4_31B_CONFIG = {"architectures": ["Gemma4ForConditionalGeneration"],
                     "text_config": {"num_hidden_layers": 60, "hidden_size": 5376}}


def test_a_merged_fine_tune_of_the_variant_passes() -> None:
    assert check_checkpoint(GEMMA4_31B_CONFIG, variant("31b"), "me/gemma-31b-merged") is None


def test_a_merged_fine_tune_of_another_size_is_refused_in_words() -> None:
    refusal = check_checkpoint(GEMMA4_31B_CONFIG, variant("e4b"), "me/gemma-31b-merged")
    assert refusal == ("me/gemma-31b-merged's config.json is not Gemma 4 E4B: num_hidden_layers 60 (Gemma 4 E4B: "
                       "42); hidden_size 5376 (Gemma 4 E4B: 2560); set model.variant to the size it was fine-tuned "
                       "from")


def test_a_merged_checkpoint_of_another_family_is_refused() -> None:
    refusal = check_checkpoint({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 60}, variant("31b"),
                               "me/llama")
    assert refusal is not None and "names LlamaForCausalLM, not a Gemma 4 model" in refusal


def test_the_26b_config_must_have_its_experts() -> None:
    config = {"architectures": ["Gemma4ForCausalLM"], "num_hidden_layers": 30, "hidden_size": 2816}
    refusal = check_checkpoint(config, variant("26b-a4b"), "me/x")
    assert refusal is not None and "num_experts None (Gemma 4 26B-A4B: 128)" in refusal
