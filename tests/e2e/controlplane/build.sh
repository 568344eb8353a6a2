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
# Needs Debian 12 (bookworm) and root (or sudo) to install: etcd-server golang-1.19-go
# golang-github-modern-go-reflect2-dev dpkg-dev make rsync openssl. Cold build: ~5-10 min on 2 cores.
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
set -euo pipefail

K8S_VERSION=1.20.2
CACHE_ROOT="${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}"
K8S_ROOT="$CACHE_ROOT/k8s-$K8S_VERSION"
BIN_DIR="$K8S_ROOT/bin"
WORK_DIR="$K8S_ROOT/work"
BUILD_ID="$K8S_VERSION+reflect2-1.0.2+gcsync-2s+openapi-nil"
BINARIES=(kube-apiserver kube-controller-manager)
APT_PACKAGES=(etcd-server golang-1.19-go golang-github-modern-go-reflect2-dev dpkg-dev make rsync openssl
              ca-certificates)
GO_BIN=/usr/lib/go-1.19/bin
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2

have_binaries() {
    local b
    for b in "${BINARIES[@]}"; do [[ -x "$BIN_DIR/$b" ]] || return 1; done
    [[ -f "$BIN_DIR/BUILD_ID" && "$(<"$BIN_DIR/BUILD_ID")" == "$BUILD_ID" ]] || return 1
    command -v etcd >/dev/null 2>&1 || [[ -x /usr/bin/etcd ]] || return 1
    command -v openssl >/dev/null 2>&1 || return 1
}

# Fast path: nothing to do (well under a second).
if [[ "${1:-}" == --check ]]; then
    have_binaries
    exit $?
fi
if have_binaries; then
    echo "build.sh: cached: $BIN_DIR (${BINARIES[*]}), etcd: $(command -v etcd || echo /usr/bin/etcd)"
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

SUDO=()
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else
        echo "build.sh: must run as root (or with sudo available) to install Debian packages" >&2; exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive

# --- 1. Debian packages -------------------------------------------------------------------------------------
missing_packages() {
    local p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
    done
}

has_deb_src() {
    # A Debian deb-src entry, one-line style or deb822 (a stanza with Types: ...deb-src... and a debian URI).
    grep -qsE '^deb-src[[:space:]].*debian' /etc/apt/sources.list /etc/apt/sources.list.d/*.list && return 0
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        awk 'BEGIN { RS = "" } /(^|\n)Types:[^\n]*deb-src/ && /(^|\n)URIs:[^\n]*debian/ { found = 1 }
             END { exit !found }' "$f" && return 0
    done
    return 1
}

add_deb_src() {
    # Mirror the existing Debian "deb" sources as "deb-src" (only Debian archives, not third-party repos).
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        sed -E 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
            | "${SUDO[@]}" tee /etc/apt/sources.list.d/gemma4-debian-src.sources >/dev/null
    elif [[ -f /etc/apt/sources.list ]] && grep -qE '^deb[[:space:]].*debian' /etc/apt/sources.list; then
        grep -E '^deb[[:space:]].*debian' /etc/apt/sources.list | sed -E 's/^deb[[:space:]]/deb-src /' \
            | "${SUDO[@]}" tee /etc/apt/sources.list.d/gemma4-debian-src.list >/dev/null
    else
        echo "deb-src http://deb.debian.org/debian bookworm main" \
            | "${SUDO[@]}" tee /etc/apt/sources.list.d/gemma4-debian-src.list >/dev/null
    fi
}

need_update=0
if ! has_deb_src; then
    log "adding deb-src entries under /etc/apt/sources.list.d/"
    add_deb_src
    need_update=1
fi
mapfile -t MISSING < <(missing_packages)
if (( ${#MISSING[@]} )); then need_update=1; fi
if (( need_update )) || ! apt-cache showsrc kubernetes >/dev/null 2>&1; then
    log "apt-get update"
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
fi
if (( ${#MISSING[@]} )); then
    log "apt-get install ${MISSING[*]}"
    "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
fi
log "packages ready"

# etcd-server may have been the only thing missing.
if have_binaries; then
    log "done: $BIN_DIR"
    exit 0
fi

# --- 2. Source package ----------------------------------------------------------------------------------------
mkdir -p "$WORK_DIR/dl" "$BIN_DIR"
cd "$WORK_DIR/dl"
find_orig() {
    local f
    for f in "$WORK_DIR"/dl/kubernetes_*really"$K8S_VERSION".orig.tar.gz "$WORK_DIR/dl/kubernetes_$K8S_VERSION.orig.tar.gz"; do
        if [[ -f "$f" ]]; then echo "$f"; return 0; fi
    done
    return 1
}
if ! ORIG_TARBALL=$(find_orig); then
    log "apt-get source --download-only kubernetes"
    # As root apt warns that the download is unsandboxed; harmless.
    apt-get source -qq --download-only kubernetes 2>&1 | grep -v 'unsandboxed as root' || true
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
    log "replacing vendored modern-go/reflect2 with Debian's $(dpkg-query -W -f='${Version}' golang-github-modern-go-reflect2-dev)"
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
export PATH="$GO_BIN:$PATH" GOPATH="$SRC_DIR/.go" GOCACHE="$WORK_DIR/gocache" CGO_ENABLED=0 GOPROXY=off \
       GOFLAGS= GO111MODULE=
mkdir -p .go/src/k8s.io
ln -sfn ../../.. .go/src/k8s.io/kubernetes
log "building with $(go version)"
t_build=$(date +%s)
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager"
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
