#!/usr/bin/env bash
# Create (once) a Python venv holding mitmproxy 11.0.2, the fault-injecting proxy of tests/e2e/test_api_faults.py
# (`mitmdump` in reverse-proxy mode with tests/e2e/faultproxy/addon.py). Its own venv because mitmproxy pins
# h11<=0.14 (the project's httpcore needs h11>=0.16) and cryptography<44.1.
#
#   tests/tools/mitmproxy_venv.sh              # idempotent; prints the venv's mitmdump path on the last stdout line
#   tests/tools/mitmproxy_venv.sh --refreeze   # rebuild without constraints and rewrite mitmproxy-constraints.txt
#
# Location: ${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}/mitmproxy-11.0.2/ (PyPI only, ~25 s cold)
# Base interpreter: ${GEMMA4_TOOLS_PYTHON:-python3} (3.11: mitmproxy 11.0.2 is the last release that supports it).
set -euo pipefail

MITMPROXY_VERSION=11.0.2
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONSTRAINTS="$HERE/mitmproxy-constraints.txt"
CACHE="${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}"
VENV="$CACHE/mitmproxy-$MITMPROXY_VERSION"
MARKER="$VENV/.gemma4-complete"
BASE_PY="${GEMMA4_TOOLS_PYTHON:-python3}"

REFREEZE=0
if [[ "${1:-}" == "--refreeze" ]]; then
  REFREEZE=1
elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [--refreeze]" >&2
  exit 2
fi

# The marker records a hash of the constraints file and of this script: editing either triggers a rebuild.
stamp() { cat "$CONSTRAINTS" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1; }
ready() { [[ $REFREEZE -eq 0 && -f "$MARKER" && "$(<"$MARKER")" == "$(stamp)" ]]; }

if ready; then
  echo "mitmproxy venv already complete: $VENV" >&2
  echo "$VENV/bin/mitmdump"
  exit 0
fi

mkdir -p "$CACHE"
# Serialise concurrent callers (make tools and a bare pytest run); re-check once we hold the lock.
exec 9>"$CACHE/.mitmproxy-$MITMPROXY_VERSION.lock"
flock 9
if ready; then
  echo "mitmproxy venv completed by another process: $VENV" >&2
  echo "$VENV/bin/mitmdump"
  exit 0
fi

START=$(date +%s)
echo "[mitmproxy_venv] creating $VENV (pip install mitmproxy==$MITMPROXY_VERSION)" >&2
rm -rf "$VENV"
"$BASE_PY" -m venv "$VENV"
CONS=(-c "$CONSTRAINTS")
[[ $REFREEZE -eq 1 ]] && CONS=()
# stdout is reserved for the path on the last line: pip's output goes to stderr.
"$VENV/bin/python" -m pip install --disable-pip-version-check --quiet "${CONS[@]}" "mitmproxy==$MITMPROXY_VERSION" >&2

got="$("$VENV/bin/mitmdump" --version | sed -n 's/^Mitmproxy: *//p')"
if [[ "$got" != "$MITMPROXY_VERSION" ]]; then
  echo "error: mitmdump reports version '$got', expected $MITMPROXY_VERSION" >&2
  exit 1
fi

if [[ $REFREEZE -eq 1 ]]; then
  {
    echo "# Exact versions for tests/tools/mitmproxy_venv.sh (regenerate with: tests/tools/mitmproxy_venv.sh --refreeze)."
    echo "# mitmproxy 11.0.2 is the last release for Python 3.11 (11.1 needs 3.12); its pins (h11<=0.14, ...) clash with ours."
    "$VENV/bin/python" -m pip freeze --exclude pip --exclude setuptools --exclude wheel | LC_ALL=C sort -f
  } >"$CONSTRAINTS"
fi

stamp >"$MARKER"
echo "[mitmproxy_venv] ready in $(( $(date +%s) - START ))s: $VENV" >&2
echo "$VENV/bin/mitmdump"
