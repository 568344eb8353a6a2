#!/usr/bin/env bash
# Create (once) a CPU-only Python venv holding vLLM 0.32.0, used only to run vLLM's own `vllm serve` argument
# parser against the command lines the operator renders (see tests/tools/vllm_argcheck.py).
#
#   tests/tools/vllm_venv.sh              # idempotent; prints the venv's python path on the last stdout line
#   tests/tools/vllm_venv.sh --refreeze   # rebuild without constraints and rewrite vllm-constraints.txt
#
# Location: ${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}/vllm-0.32.0/
# Base interpreter: ${GEMMA4_VLLM_PYTHON:-python3} (must be CPython 3.11: the local torch wheel is cp311).
#
# Recipe (test-tooling.md §8): torch==2.13.0 is the local CPU wheel; vllm is installed with --no-deps and then only
# the pure-Python distributions needed to build its parser. NEVER replace this by a plain `pip install vllm`, which
# pulls ~13 nvidia-*/CUDA packages (GBs). The torch pin in the constraints file is `2.13.0+cpu`, so pip fails
# instead of silently downloading a CUDA torch if the local CPU wheel is missing.
set -euo pipefail

VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONSTRAINTS="$HERE/vllm-constraints.txt"
CACHE="${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}"
VENV="$CACHE/vllm-$VLLM_VERSION"
MARKER="$VENV/.gemma4-complete"
BASE_PY="${GEMMA4_VLLM_PYTHON:-python3}"

REFREEZE=0
if [[ "${1:-}" == "--refreeze" ]]; then
  REFREEZE=1
elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [--refreeze]" >&2
  exit 2
fi

# The marker records a hash of the constraints file and of this script: editing either triggers a rebuild.
stamp() { cat "$CONSTRAINTS" "${BASH_SOURCE[0]}" 2>/dev/null | sha256sum | cut -d' ' -f1; }

if [[ $REFREEZE -eq 0 && -f "$MARKER" && "$(cat "$MARKER")" == "$(stamp)" ]]; then
  echo "vllm venv already complete: $VENV" >&2
  echo "$VENV/bin/python"
  exit 0
fi

mkdir -p "$CACHE"
# Serialise concurrent callers (e.g. several pytest workers); re-check the marker once we hold the lock.
exec 9>"$CACHE/.vllm-$VLLM_VERSION.lock"
flock 9
if [[ $REFREEZE -eq 0 && -f "$MARKER" && "$(cat "$MARKER")" == "$(stamp)" ]]; then
  echo "vllm venv completed by another process: $VENV" >&2
  echo "$VENV/bin/python"
  exit 0
fi

# Pure-Python runtime dependencies needed to import vLLM's CLI/arg parser (test-tooling.md §8, exactly this list),
# narrowed to vLLM 0.32.0's own Requires-Dist bounds where it declares one (pip does not enforce those, because
# vllm is installed with --no-deps; apache-tvm-ffi arrives through xgrammar).
DEPS=(
  'transformers>=5.16.1,<5.20.0' 'fastapi>=0.133.0,<0.137.0' 'llguidance>=1.7.0,<1.8.0' 'apache-tvm-ffi==0.1.11'
  'xgrammar==0.2.8' 'requests>=2.33.0' 'huggingface_hub>=1.31.0' 'tokenizers>=0.23.2' 'starlette>=1.0.1'
  'aiohttp>=3.14.3' 'openai>=2.25.0' 'pydantic>=2.12.0' 'pillow>=12.3.0' 'opencv-python-headless>=4.13.0'
  # not needed by the parser: lets gen_vllm_metrics.py mount vLLM's real /metrics route (http_* metrics)
  'prometheus-fastapi-instrumentator>=8.0.0'
  Jinja2 MarkupSafe PyYAML aiohappyeyeballs aiohttp aiosignal annotated-doc annotated-types anyio
  attrs cachetools cbor2 certifi charset-normalizer click cloudpickle dill email-validator fastapi
  filelock frozenlist googleapis-common-protos grpcio h11 httpcore2 httpx2 huggingface_hub idna
  llguidance ml_dtypes mpmath msgspec multidict networkx numpy openai opencv-python-headless
  opentelemetry-api opentelemetry-exporter-http-transport opentelemetry-exporter-otlp-common
  opentelemetry-exporter-otlp-proto-common opentelemetry-exporter-otlp-proto-grpc
  opentelemetry-exporter-otlp-proto-http opentelemetry-exporter-otlp opentelemetry-proto
  opentelemetry-sdk opentelemetry-semantic-conventions-ai opentelemetry-semantic-conventions orjson
  oss-harmony packaging partial-json-parser pillow prometheus_client propcache protobuf psutil
  py-cpuinfo pybase64 pydantic-extra-types pydantic pydantic_core python-multipart pyzmq regex
  requests safetensors sentencepiece sniffio starlette sympy tiktoken tokenizers tqdm truststore
  typing-inspection typing_extensions urllib3 uvicorn uvloop watchfiles yarl
)

START=$(date +%s)
t() { echo "[vllm_venv +$(( $(date +%s) - START ))s] $*" >&2; }

if ! "$BASE_PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "error: $BASE_PY is not Python 3.11 (the local torch $TORCH_VERSION CPU wheel is cp311);" \
    "set GEMMA4_VLLM_PYTHON" >&2
  exit 1
fi

t "creating $VENV (cold build, ~1-2 min)"
rm -rf "$VENV"
"$BASE_PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
if [[ $REFREEZE -eq 1 ]]; then
  CONS=()
  TORCH_REQ="torch==$TORCH_VERSION"
else
  CONS=(-c "$CONSTRAINTS")
  TORCH_REQ="torch==$TORCH_VERSION+cpu"
fi

t "pip install $TORCH_REQ"
"${PIP[@]}" install "${CONS[@]}" "$TORCH_REQ"
t "pip install --no-deps vllm==$VLLM_VERSION"
"${PIP[@]}" install "${CONS[@]}" --no-deps "vllm==$VLLM_VERSION"
t "pip install ${#DEPS[@]} pure-Python dependencies"
"${PIP[@]}" install "${CONS[@]}" "torch==$TORCH_VERSION" "${DEPS[@]}"

# Guard: the CPU recipe must never have pulled CUDA packages or replaced the CPU torch.
if "$VENV/bin/python" -m pip list --format=freeze 2>/dev/null | grep -Eiq '^(nvidia-|cuda-)'; then
  echo "error: CUDA packages were installed into $VENV; refusing to continue" >&2
  exit 1
fi
"$VENV/bin/python" - <<'PY'
import torch
assert torch.__version__.endswith("+cpu"), f"expected the CPU torch wheel, got {torch.__version__}"
PY

t "smoke test: import vLLM's serve CLI"
VLLM_TARGET_DEVICE=cpu "$VENV/bin/python" -c \
  'import vllm.entrypoints.cli.serve, vllm.engine.arg_utils, vllm.tool_parsers, vllm.reasoning' 2>/dev/null

if [[ $REFREEZE -eq 1 ]]; then
  {
    echo "# Exact versions for tests/tools/vllm_venv.sh (regenerate with: tests/tools/vllm_venv.sh --refreeze)."
    echo "# torch is the local CPU wheel; vllm itself is installed with --no-deps."
    "$VENV/bin/python" -m pip list --format=freeze --exclude pip --exclude setuptools --exclude wheel \
      | LC_ALL=C sort -f
  } >"$CONSTRAINTS"
  t "wrote $CONSTRAINTS ($(grep -vc '^#' "$CONSTRAINTS") pins)"
fi

stamp >"$MARKER"
t "done: $(du -sh "$VENV" | cut -f1) in $VENV"
echo "$VENV/bin/python"
