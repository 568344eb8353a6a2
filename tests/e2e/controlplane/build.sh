#!/usr/bin/env bash
# Build kube-apiserver + kube-controller-manager v1.20.2 from Debian's `kubernetes` source package and cache
# them, for the real-control-plane e2e tier (see test-tooling.md §6).
#
#   tests/e2e/controlplane/build.sh          # idempotent; exits immediately when the binaries are cached
#   tests/e2e/controlplane/build.sh --check  # exit 0 if everything is cached, 1 if a build is needed
#
# Output: ${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}/k8s-1.20.2/bin/{kube-apiserver,kube-controller-manager}
# Work dir (source tree, Go build cache, ~2.5 GB) lives next to it under .../k8s-1.20.2/work and is removed after
# a successful build unless GEMMA4_K8S_KEEP_WORK=1.
#
# Installs nothing and needs no root: tests/tools/debian_tools.sh downloads the pinned Debian packages (etcd
# 3.4.23, Go 1.19.8, reflect2 1.0.2) with `apt-get download`, unpacks them with `dpkg -x` under the cache
# (debian-bookworm/root; GOROOT = .../usr/lib/go-1.19), and downloads the pinned `kubernetes` source package with a
# private apt configuration (no deb-src entry under /etc is needed or added). Host tools used: bash, make, tar,
# sha256sum, flock, cmp (Debian's base system and make), and openssl at run time for the control plane's PKI.
# Cold build: ~5-10 min on 2 cores; a progress line with the elapsed seconds every 30 s while Go compiles.
#
# Patches applied to the orig tree (bump BUILD_ID when changing them, so cached binaries get rebuilt):
#   1. vendored modern-go/reflect2 v1.0.1 -> Debian's 1.0.2 (REQUIRED: v1.0.1 segfaults with Go >= 1.18 on the
#      first custom-resource create; test-tooling.md §6.3).
#   2. kube-controller-manager: garbage collector discovery resync 30s -> 2s, so the GC starts watching a new
#      CRD's resource within ~2s instead of up to 30s (+ retry back-off: owned objects of a CR deleted right
#      after its CRD was created were collected only after ~40s). Test-speed only; no behaviour change otherwise.
#   3. vendored OpenAPI type validator (go-openapi/validate and kube-openapi/pkg/validation/validate, type.go):
#      `data == nil || reflect.DeepEqual(reflect.Zero(T), reflect.ValueOf(data))` -> `data == nil` (REQUIRED:
#      built with Go >= 1.19 the DeepEqual of the two reflect.Values becomes true for a decoded "" because both
#      point at the runtime's shared zero value, so every empty string in a custom resource or in a CRD default
#      was rejected as `Invalid value: "null": ... must be of type string: "null"`; built with Go 1.15, as the
#      1.20.2 release was, that comparison is never true for a decoded value, so only nil counts as null).
# The toolchain, source package and patches are the same as when this script once installed them system-wide with apt,
# so the BUILD_ID (and binaries cached by that version) stay valid.
set -euo pipefail

K8S_VERSION=1.20.2
CACHE_ROOT="${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}"
K8S_ROOT="$CACHE_ROOT/k8s-$K8S_VERSION"
BIN_DIR="$K8S_ROOT/bin"
WORK_DIR="$K8S_ROOT/work"
BUILD_ID="$K8S_VERSION+reflect2-1.0.2+gcsync-2s+openapi-nil"
BINARIES=(kube-apiserver kube-controller-manager)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEBIAN_TOOLS="$HERE/../../tools/debian_tools.sh"
DEBIAN_ROOT="$CACHE_ROOT/debian-bookworm/root"
GOROOT_DIR="$DEBIAN_ROOT/usr/lib/go-1.19"
REFLECT2_SRC="$DEBIAN_ROOT/usr/share/gocode/src/github.com/modern-go/reflect2"

have_kube_binaries() {
    local b
    for b in "${BINARIES[@]}"; do [[ -x "$BIN_DIR/$b" ]] || return 1; done
    [[ -f "$BIN_DIR/BUILD_ID" && "$(<"$BIN_DIR/BUILD_ID")" == "$BUILD_ID" ]]
}

have_binaries() {
    have_kube_binaries || return 1
    bash "$DEBIAN_TOOLS" --check || return 1   # etcd, from the unpacked Debian package
    command -v openssl >/dev/null 2>&1 || return 1
}

# Fast path: nothing to do (well under a second).
if [[ "${1:-}" == --check ]]; then
    have_binaries
    exit $?
fi
if ! command -v openssl >/dev/null 2>&1; then
    echo "build.sh: openssl is not on PATH; the control plane's certificates are made with it (Debian: openssl)" >&2
    exit 1
fi
if have_binaries; then
    echo "build.sh: cached: $BIN_DIR (${BINARIES[*]}), etcd: $DEBIAN_ROOT/usr/bin/etcd"
    exit 0
fi

T_START=$(date +%s)
log() { echo "build.sh [+$(( $(date +%s) - T_START ))s] $*"; }

# One build at a time (parallel pytest sessions/workers); re-check once we hold the lock.
mkdir -p "$K8S_ROOT"
exec 9>"$K8S_ROOT/.build.lock"
if ! flock -n 9; then
    log "waiting for another build.sh (lock $K8S_ROOT/.build.lock)"
    flock 9
fi
if have_binaries; then
    log "built by another process: $BIN_DIR"
    exit 0
fi

# --- 1. Debian packages: downloaded and unpacked under the cache, nothing installed ----------------------------
log "Debian packages (etcd, Go 1.19, reflect2) -> $DEBIAN_ROOT"
bash "$DEBIAN_TOOLS" >/dev/null
log "packages ready"

# etcd may have been the only thing missing.
if have_kube_binaries; then
    log "done: $BIN_DIR"
    exit 0
fi

# --- 2. Source package ----------------------------------------------------------------------------------------
mkdir -p "$WORK_DIR/dl" "$BIN_DIR"
find_orig() {
    local f
    for f in "$WORK_DIR"/dl/kubernetes_*really"$K8S_VERSION".orig.tar.gz "$WORK_DIR/dl/kubernetes_$K8S_VERSION.orig.tar.gz"; do
        if [[ -f "$f" ]]; then echo "$f"; return 0; fi
    done
    return 1
}
if ! ORIG_TARBALL=$(find_orig); then
    log "downloading the kubernetes source package (apt-get source --download-only, private apt config)"
    bash "$DEBIAN_TOOLS" --source "$WORK_DIR/dl" >/dev/null
    if ! ORIG_TARBALL=$(find_orig); then
        echo "build.sh: no kubernetes $K8S_VERSION orig tarball in $WORK_DIR/dl:" >&2
        ls -la "$WORK_DIR/dl" >&2
        exit 1
    fi
fi
log "source: $ORIG_TARBALL"

SRC_DIR="$WORK_DIR/src"
if [[ ! -f "$SRC_DIR/.gemma4-extracted" ]]; then
    log "extracting"
    rm -rf "$SRC_DIR"
    mkdir -p "$SRC_DIR"
    tar -xzf "$ORIG_TARBALL" -C "$SRC_DIR" --strip-components=1
    touch "$SRC_DIR/.gemma4-extracted"
fi

# --- 3. reflect2 patch (vendored v1.0.1 segfaults with Go >= 1.18 on the first CR create) ------------------
if [[ ! -f "$SRC_DIR/.gemma4-reflect2-patched" ]]; then
    log "replacing vendored modern-go/reflect2 with Debian's ($(grep -o 'reflect2-dev=[^ ]*' "$DEBIAN_ROOT/.packages"))"
    V="$SRC_DIR/vendor/github.com/modern-go/reflect2"
    find "$V" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
    cp "$REFLECT2_SRC"/*.go "$V"/
    cp "$REFLECT2_SRC"/*.s "$V"/ 2>/dev/null || true
    touch "$SRC_DIR/.gemma4-reflect2-patched"
fi

GC_FILE="$SRC_DIR/cmd/kube-controller-manager/app/core.go"
if ! grep -q 'garbageCollector.Sync(gcClientset.Discovery(), 2\*time.Second' "$GC_FILE"; then
    log "patching the garbage collector discovery resync period to 2s"
    sed -i 's/garbageCollector.Sync(gcClientset.Discovery(), 30\*time.Second/garbageCollector.Sync(gcClientset.Discovery(), 2*time.Second/' \
        "$GC_FILE"
    grep -q 'garbageCollector.Sync(gcClientset.Discovery(), 2\*time.Second' "$GC_FILE" \
        || { echo "build.sh: GC resync patch did not apply" >&2; exit 1; }
fi

# --- 3b. OpenAPI type validator: only nil is null (see patch 3 in the header) -----------------------------------
ZERO_CHECK='if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {'
for f in "$SRC_DIR/vendor/github.com/go-openapi/validate/type.go" \
         "$SRC_DIR/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go"; do
    if grep -qF "$ZERO_CHECK" "$f"; then
        log "patching the zero-value-is-null check in ${f#"$SRC_DIR"/}"
        sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$f"
        ! grep -qF "$ZERO_CHECK" "$f" || { echo "build.sh: OpenAPI zero-value patch did not apply to $f" >&2; exit 1; }
    fi
done

# --- 4. Build (like debian/rules: make with a GOPATH symlink) ------------------------------------------------
cd "$SRC_DIR"
# kube's build copies the binaries it built with `rsync -pc FILE DIR` (hack/lib/golang.sh, place_bins) and uses
# rsync for nothing else on this path. rsync is not in Debian's base system; a copy with the same effect stands in.
SHIM_DIR="$WORK_DIR/shims"
mkdir -p "$SHIM_DIR"
cat >"$SHIM_DIR/rsync" <<'SHIM'
#!/usr/bin/env bash
# Stand-in for `rsync -pc SRC... DEST`: copy, keep the permission bits, leave files with equal contents alone.
set -euo pipefail
[[ "${1:-}" == -pc && $# -ge 3 ]] || { echo "rsync shim: only 'rsync -pc SRC... DEST' is supported: $*" >&2; exit 2; }
shift
dest="${!#}"
for src in "${@:1:$#-1}"; do
    target="$dest"
    if [[ -d "$dest" ]]; then target="$dest/$(basename "$src")"; fi
    cmp -s "$src" "$target" 2>/dev/null || cp -p "$src" "$target"
    chmod --reference="$src" "$target"
done
SHIM
chmod +x "$SHIM_DIR/rsync"
export GOROOT="$GOROOT_DIR"
export PATH="$SHIM_DIR:$GOROOT_DIR/bin:$PATH" GOPATH="$SRC_DIR/.go" GOCACHE="$WORK_DIR/gocache" CGO_ENABLED=0 \
       GOPROXY=off GOFLAGS= GO111MODULE=
mkdir -p .go/src/k8s.io
ln -sfn ../../.. .go/src/k8s.io/kubernetes
log "building with $(go version) (GOROOT $GOROOT)"
t_build=$(date +%s)
# Go prints nothing for minutes while it compiles: a heartbeat line every 30 s shows that the build is alive.
( while sleep 30 </dev/null >/dev/null 2>&1; do log "still building: make has run for $(( $(date +%s) - t_build ))s"; done ) &
HEARTBEAT=$!
trap 'kill "$HEARTBEAT" 2>/dev/null || true' EXIT
# Run as a top-level make even when called from the project's Makefile (no inherited MAKEFLAGS/MAKELEVEL).
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES make WHAT="cmd/kube-apiserver cmd/kube-controller-manager"
kill "$HEARTBEAT" 2>/dev/null || true
log "make took $(( $(date +%s) - t_build ))s"

rm -f "$BIN_DIR/BUILD_ID"
for b in "${BINARIES[@]}"; do
    install -m 0755 "_output/bin/$b" "$BIN_DIR/.$b.tmp"
    mv -f "$BIN_DIR/.$b.tmp" "$BIN_DIR/$b"
done
"$BIN_DIR/kube-apiserver" --version
echo "$BUILD_ID" > "$BIN_DIR/BUILD_ID"

if [[ "${GEMMA4_K8S_KEEP_WORK:-0}" != 1 ]]; then
    log "removing work dir $WORK_DIR (set GEMMA4_K8S_KEEP_WORK=1 to keep it)"
    rm -rf "$WORK_DIR"
    log "removed"
fi
log "done: $BIN_DIR ($(du -sh "$BIN_DIR" | cut -f1)), total $(( $(date +%s) - T_START ))s"
