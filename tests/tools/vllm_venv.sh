#!/usr/bin/env bash
# Create (once) a Python venv holding vLLM 0.32.0, used only to run vLLM's own `vllm serve` argument parser on the
# CPU against the command lines the operator renders (see tests/tools/vllm_argcheck.py). Everything comes from PyPI.
#
#   tests/tools/vllm_venv.sh              # idempotent; prints the venv's python path on the last stdout line
#   tests/tools/vllm_venv.sh --refreeze   # rebuild from the recipe below and rewrite vllm-constraints.txt
#
# Location: ${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}/vllm-0.32.0/
# Base interpreter: ${GEMMA4_VLLM_PYTHON:-python3}; must be CPython 3.11, the interpreter the pins were frozen on
# (vLLM declares extra dependencies above 3.11, and some pinned wheels are per-interpreter builds).
#
# Why torch brings NVIDIA libraries: vLLM 0.32.0 requires exactly torch==2.13.0, and PyPI's only Linux x86_64 build
# of it is the CUDA 13.0 one (torch.__version__ 2.13.0+cu130; there is no CPU build on PyPI). Its libtorch_cpu.so
# and libtorch_python.so name libcudart, libcublas, libcudnn, libnccl, ... as DT_NEEDED, so `import torch` fails
# without them even where no GPU is used. The recipe therefore installs torch with --no-deps plus exactly the 13
# NVIDIA runtime wheels whose libraries the dynamic loader needs to import torch (CUDA_RUNTIME below, measured with
# readelf and /proc/self/maps), and leaves out the rest of torch's CUDA requirements (cusolver, nvtx, the cuda-toolkit
# metapackage, cuda-bindings, triton) and all of vLLM's (flashinfer, cutlass-dsl, torchvision/torchaudio/torchcodec).
# The GPU is never touched: torch.cuda.is_available() is False on a machine without a driver.
#
# Recipe (test-tooling.md §8): every distribution is installed with --no-deps from the complete list in
# vllm-constraints.txt; no resolver runs, so nothing that torch, vllm or xgrammar declare can slip in. NEVER replace
# this by a plain `pip install vllm` (or let pip resolve torch's or xgrammar's dependencies): that pulls every
# CUDA package of torch and vLLM (GBs more). The guard below fails the build if the venv holds any nvidia-*/cuda-*
# distribution other than CUDA_RUNTIME, or a torch other than the PyPI 2.13.0+cu130 build.
set -euo pipefail

VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0  # vLLM 0.32.0's METADATA: Requires-Dist: torch==2.13.0
TORCH_BUILD=2.13.0+cu130  # torch.__version__ of PyPI's torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl
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

# The NVIDIA runtime wheels `import torch` needs (torch 2.13.0's DT_NEEDED closure), at the versions torch 2.13.0
# declares (its own pins, and those of its cuda-toolkit==13.0.3 extras; nvjitlink at the toolkit's 13.0 release).
# Used by --refreeze, and by the guard: no other nvidia-*/cuda-* distribution may be in the venv.
CUDA_RUNTIME=(
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85 nvidia-cuda-nvrtc==13.0.88 nvidia-nvjitlink==13.0.88
  nvidia-cublas==13.1.1.3 nvidia-cufft==12.0.0.61 nvidia-cufile==1.15.1.6 nvidia-curand==10.4.0.35
  nvidia-cusparse==12.6.3.3 nvidia-cudnn-cu13==9.20.0.48 nvidia-cusparselt-cu13==0.8.1 nvidia-nccl-cu13==2.29.7
  nvidia-nvshmem-cu13==3.4.5
)
# Installed with --no-deps by --refreeze: their declared dependencies include torch, whose CUDA requirements pip
# would then resolve. xgrammar's other dependencies are in DEPS; its triton (a GPU kernel compiler) is not needed.
NO_DEPS=("torch==$TORCH_VERSION" "vllm==$VLLM_VERSION" 'xgrammar==0.2.8')
# Pure-Python runtime dependencies needed to import vLLM's CLI/arg parser (test-tooling.md §8, exactly this list),
# narrowed to vLLM 0.32.0's own Requires-Dist bounds where it declares one (pip does not enforce those, because
# vllm is installed with --no-deps). They include torch's own (filelock, Jinja2, networkx, sympy, typing_extensions;
# fsspec arrives through huggingface_hub). None of them may depend on torch: pip would resolve its CUDA requirements.
DEPS=(
  'transformers>=5.16.1,<5.20.0' 'fastapi>=0.133.0,<0.137.0' 'llguidance>=1.7.0,<1.8.0' 'apache-tvm-ffi==0.1.11'
  'requests>=2.33.0' 'huggingface_hub>=1.31.0' 'tokenizers>=0.23.2' 'starlette>=1.0.1'
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
  echo "error: $BASE_PY is not Python 3.11 (vllm-constraints.txt was frozen on CPython 3.11);" \
    "set GEMMA4_VLLM_PYTHON to a python3.11" >&2
  exit 1
fi

t "creating $VENV (cold build: ~3 GB of wheels from PyPI, a few minutes)"
rm -rf "$VENV"
"$BASE_PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
if [[ $REFREEZE -eq 1 ]]; then
  t "pip install --no-deps ${NO_DEPS[*]} + ${#CUDA_RUNTIME[@]} NVIDIA runtime wheels"
  "${PIP[@]}" install --no-deps "${NO_DEPS[@]}" "${CUDA_RUNTIME[@]}"
  t "pip install ${#DEPS[@]} pure-Python dependencies"
  "${PIP[@]}" install "${DEPS[@]}"
else
  t "pip install --no-deps -r $(basename "$CONSTRAINTS") ($(grep -vc '^#' "$CONSTRAINTS") pins)"
  "${PIP[@]}" install --no-deps -r "$CONSTRAINTS"
fi

# Guard: the only CUDA distributions are the runtime libraries `import torch` needs, and torch is PyPI's build.
allowed=$(printf '%s\n' "${CUDA_RUNTIME[@]%%==*}" | LC_ALL=C sort)
present=$("$VENV/bin/python" -m pip list --format=freeze 2>/dev/null | grep -Ei '^(nvidia-|cuda-)' | cut -d= -f1 \
  | tr 'A-Z_' 'a-z-' | LC_ALL=C sort || true)
if [[ "$present" != "$allowed" ]]; then
  echo "error: the CUDA distributions in $VENV are not exactly the ${#CUDA_RUNTIME[@]} runtime wheels torch needs;" \
    "unexpected or missing:" >&2
  diff <(echo "$allowed") <(echo "$present") | grep '^[<>]' >&2 || true
  exit 1
fi
TORCH_BUILD="$TORCH_BUILD" "$VENV/bin/python" - <<'PY'
import os, torch
expected = os.environ["TORCH_BUILD"]
assert torch.__version__ == expected, f"expected PyPI's torch {expected}, got {torch.__version__}"
PY

t "smoke test: import vLLM's serve CLI"
if ! smoke=$(VLLM_TARGET_DEVICE=cpu "$VENV/bin/python" -c \
  'import vllm.entrypoints.cli.serve, vllm.engine.arg_utils, vllm.tool_parsers, vllm.reasoning' 2>&1); then
  echo "error: vLLM's serve CLI does not import in $VENV:" >&2
  tail -n 20 <<<"$smoke" >&2
  exit 1
fi

if [[ $REFREEZE -eq 1 ]]; then
  {
    echo "# Every distribution of tests/tools/vllm_venv.sh's venv, installed as-is with pip --no-deps"
    echo "# (regenerate with: tests/tools/vllm_venv.sh --refreeze). torch is PyPI's 2.13.0 (CUDA 13.0 build);"
    echo "# the nvidia-* wheels are only the runtime libraries its import loads. vllm, torch and xgrammar"
    echo "# declare more; none of it is installed."
    "$VENV/bin/python" -m pip list --format=freeze --exclude pip --exclude setuptools --exclude wheel \
      | LC_ALL=C sort -f
  } >"$CONSTRAINTS"
  t "wrote $CONSTRAINTS ($(grep -vc '^#' "$CONSTRAINTS") pins)"
fi

stamp >"$MARKER"
t "done: $(du -sh "$VENV" | cut -f1) in $VENV"
echo "$VENV/bin/python"
