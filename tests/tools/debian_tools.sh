#!/usr/bin/env bash
# Fetch the Debian packages the e2e tier needs, WITHOUT installing anything and without root: pinned binary
# packages are downloaded with `apt-get download` and unpacked with `dpkg -x` into the tools cache; the
# `kubernetes` source package is downloaded with `apt-get source --download-only`. apt runs with a private
# configuration (sources, package lists, archive cache and an empty dpkg status) under the cache, so /etc and
# /var/lib/apt are only read, never written, and no `apt-get update` of the system's lists is needed.
#
#   tests/tools/debian_tools.sh                 # unpack the binary packages; prints the root dir on the last line
#   tests/tools/debian_tools.sh --check         # exit 0 if the unpacked root is complete, 1 otherwise
#   tests/tools/debian_tools.sh --source DIR    # download the pinned kubernetes source package into DIR
#
# Layout under ${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}/debian-bookworm/:
#   apt/       private apt state: sources.list.d/debian.sources (deb + deb-src, Debian archives only), lists/,
#              cache/, an empty status file
#   debs/      the downloaded .deb files (kept, so a re-unpack needs no network)
#   root/      the packages unpacked with dpkg -x: usr/bin/etcd, usr/lib/go-1.19 (GOROOT), usr/share/go-1.19,
#              usr/share/gocode/src/github.com/modern-go/reflect2; root/.packages lists the unpacked versions
#
# The Debian archive URLs are taken from the system's Debian `deb` entries (read only), or default to
# deb.debian.org bookworm. Works as root or as any user.
set -euo pipefail

# Exact versions (Debian 12 bookworm). Changing one re-unpacks the root.
PACKAGES=(
  etcd-server=3.4.23-4+b4                      # etcd 3.4.23 for the control plane
  golang-1.19-go=1.19.8-2                      # Go toolchain that builds kube-apiserver/-controller-manager
  golang-1.19-src=1.19.8-2                     # its standard library sources (GOROOT/src)
  golang-github-modern-go-reflect2-dev=1.0.2-2 # replaces the vendored reflect2 1.0.1 (build.sh patch 1)
)
KUBERNETES_SRC=kubernetes=1.20.5+really1.20.2-1.1+deb12u1
KUBERNETES_ORIG_SHA256=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc

CACHE="${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}"
BASE="$CACHE/debian-bookworm"
APT_DIR="$BASE/apt"
DEBS="$BASE/debs"
ROOT="$BASE/root"
STAMP="${PACKAGES[*]}"

START=$(date +%s)
log() { echo "[debian_tools +$(( $(date +%s) - START ))s] $*" >&2; }

complete() { [[ -f "$ROOT/.packages" && "$(<"$ROOT/.packages")" == "$STAMP" && -x "$ROOT/usr/bin/etcd" ]]; }

if [[ "${1:-}" == --check ]]; then
  complete
  exit $?
fi

APT_OPTS=(
  -o "Dir::Etc::SourceList=$APT_DIR/sources.list"
  -o "Dir::Etc::SourceParts=$APT_DIR/sources.list.d"
  -o "Dir::Etc::Preferences=$APT_DIR/preferences"
  -o "Dir::Etc::PreferencesParts=$APT_DIR/preferences.d"
  -o "Dir::State::Lists=$APT_DIR/lists"
  -o "Dir::State::status=$APT_DIR/status"
  -o "Dir::Cache=$APT_DIR/cache"
  -o "Debug::NoLocking=1"
  # As root, apt would hand downloads to the _apt user, who cannot write into a cache under $HOME.
  -o "APT::Sandbox::User=$(id -un)"
  -o "Acquire::Languages=none"
  -o "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"
)

write_sources() {
  # deb822 stanzas of the system's Debian archives (URIs containing "debian"), with Types: deb deb-src.
  local out="$APT_DIR/sources.list.d/debian.sources" f tmp
  tmp="$(mktemp "$APT_DIR/sources.XXXXXX")"
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    # (stanzas with only deb-src, e.g. added by hand, are skipped: their deb twin gives the same entry)
    awk 'BEGIN { RS = ""; ORS = "\n\n" }
         { n = split($0, lines, "\n"); bin = 0; uri = 0; on = 1; out = ""
           for (i = 1; i <= n; i++) {
             if (lines[i] ~ /^Types:/) { if ((" " substr(lines[i], 7) " ") ~ /[[:space:]]deb[[:space:]]/) bin = 1
                                         lines[i] = "Types: deb deb-src" }
             if (lines[i] ~ /^URIs:.*debian/) uri = 1
             if (lines[i] ~ /^Enabled:[[:space:]]*no/) on = 0
             out = out (i > 1 ? "\n" : "") lines[i] }
           if (bin && uri && on) print out }' "$f" >>"$tmp"
  done
  if [[ ! -s "$tmp" && -f /etc/apt/sources.list ]]; then
    # one-line style: "deb [opts] URI suite components" -> a deb and a deb-src line
    grep -E '^deb[[:space:]].*debian' /etc/apt/sources.list | sed -E 'p; s/^deb[[:space:]]/deb-src /' \
      >"$APT_DIR/sources.list" || true
  fi
  if [[ ! -s "$tmp" && ! -s "$APT_DIR/sources.list" ]]; then
    cat >"$tmp" <<'EOF'
Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  if [[ -s "$tmp" ]]; then mv -f "$tmp" "$out"; else rm -f "$tmp"; fi
}

apt_setup() {
  mkdir -p "$APT_DIR"/{sources.list.d,preferences.d,lists/partial,cache/archives/partial}
  touch "$APT_DIR/sources.list" "$APT_DIR/preferences" "$APT_DIR/status"
  if [[ ! -f "$APT_DIR/.sources-written" ]]; then
    : >"$APT_DIR/sources.list"
    write_sources
    touch "$APT_DIR/.sources-written"
  fi
}

apt_update() {
  log "apt-get update (private lists in $APT_DIR/lists)"
  apt-get "${APT_OPTS[@]}" -qq update >&2
}

# Run "$@" (an apt-get download/source command); on failure refresh the private lists once and retry.
apt_retry() {
  if [[ ! -f "$APT_DIR/.updated" ]]; then
    apt_update
    touch "$APT_DIR/.updated"
  fi
  if ! "$@" >&2; then
    apt_update
    "$@" >&2 || {
      echo "debian_tools.sh: '$*' failed. The pinned versions are in $0; if Debian no longer serves one," \
        "update the pin (apt-cache policy / showsrc with the options above shows what is available)." >&2
      return 1
    }
  fi
}

mkdir -p "$BASE"
exec 9>"$BASE/.lock"
flock 9

if [[ "${1:-}" == --source ]]; then
  dest="${2:?usage: $0 --source DIR}"
  mkdir -p "$dest"
  orig="$dest/kubernetes_${KUBERNETES_SRC#kubernetes=}"
  orig="${orig%-*}"          # drop the Debian revision: kubernetes_1.20.5+really1.20.2
  orig="$orig.orig.tar.gz"
  if [[ -f "$orig" ]] && echo "$KUBERNETES_ORIG_SHA256  $orig" | sha256sum --check --status; then
    log "source already downloaded: $orig"
  else
    apt_setup
    log "apt-get source --download-only $KUBERNETES_SRC (34 MB)"
    (cd "$dest" && apt_retry apt-get "${APT_OPTS[@]}" -qq source --download-only "$KUBERNETES_SRC")
    echo "$KUBERNETES_ORIG_SHA256  $orig" | sha256sum --check --quiet
  fi
  echo "$orig"
  exit 0
fi

if complete; then
  echo "$ROOT"
  exit 0
fi

apt_setup
mkdir -p "$DEBS"
missing=()
for p in "${PACKAGES[@]}"; do
  name="${p%%=*}" version="${p#*=}"
  compgen -G "$DEBS/${name}_${version/:/%3a}_*.deb" >/dev/null || missing+=("$p")
done
if (( ${#missing[@]} )); then
  log "apt-get download ${missing[*]}"
  (cd "$DEBS" && apt_retry apt-get "${APT_OPTS[@]}" -qq download "${missing[@]}")
fi

log "unpacking into $ROOT (dpkg -x)"
rm -rf "$ROOT.tmp"
mkdir -p "$ROOT.tmp"
for p in "${PACKAGES[@]}"; do
  name="${p%%=*}" version="${p#*=}"
  dpkg -x "$(compgen -G "$DEBS/${name}_${version/:/%3a}_*.deb" | head -n1)" "$ROOT.tmp"
done
"$ROOT.tmp/usr/bin/etcd" --version >/dev/null
GOROOT="$ROOT.tmp/usr/lib/go-1.19" "$ROOT.tmp/usr/lib/go-1.19/bin/go" version >/dev/null
echo "$STAMP" >"$ROOT.tmp/.packages"
rm -rf "$ROOT"
mv "$ROOT.tmp" "$ROOT"
# Go resolves GOROOT from its own path, so the tree works where it is; check that after the move.
GOROOT="$ROOT/usr/lib/go-1.19" "$ROOT/usr/lib/go-1.19/bin/go" version >&2
log "done: $ROOT ($(du -sh "$ROOT" | cut -f1))"
echo "$ROOT"
