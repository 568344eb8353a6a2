#!/usr/bin/env bash
# Install promtool (Prometheus 2.42.0, Debian 12's `prometheus` package) for the alerting-rule tests.
#
#   tests/tools/promtool.sh        # idempotent; prints the bin directory on the last stdout line
#
# Source: the Debian package prometheus=2.42.0+ds-5+deb12u1, fetched with `apt-get download` and unpacked with
# `dpkg -x`: nothing is installed and no system file changes. When the machine's apt lists do not know that
# version (no `apt-get update` yet), the lists are fetched into a private directory under the cache instead.
# Target: ${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}/bin/promtool
set -euo pipefail

DEB_VERSION="2.42.0+ds-5+deb12u1"
PROMTOOL_VERSION="2.42.0"
# sha256 of prometheus_${DEB_VERSION}_amd64.deb; other architectures are checked by version only.
DEB_SHA256_amd64="81d59a24fce84f7fbe97a45a4f2914b6a5881b5cd1db2a6a0e129e515e1a5f55"
CACHE="${GEMMA4_TOOLS_CACHE:-$HOME/.cache/gemma4-operator}"
BIN="$CACHE/bin"
MARKER="$BIN/.promtool-$DEB_VERSION"

complete() { [[ -f "$MARKER" && -x "$BIN/promtool" ]]; }
version() { echo "promtool: $("$BIN/promtool" --version 2>&1 | head -n1)" >&2; }

if complete; then
  version
  echo "$BIN"
  exit 0
fi

mkdir -p "$BIN"
exec 9>"$CACHE/.promtool.lock"
flock 9
if complete; then
  version
  echo "$BIN"
  exit 0
fi

START=$(date +%s)
DL="$(mktemp -d "$CACHE/.promtool-dl.XXXXXX")"
trap 'rm -rf "$DL"' EXIT
chmod 755 "$DL"  # readable by apt's _apt user
cd "$DL"
echo "[promtool] apt-get download prometheus=$DEB_VERSION" >&2
if ! apt-get -q download "prometheus=$DEB_VERSION" >&2 2>"$DL/apt.err"; then
  cat "$DL/apt.err" >&2
  echo "[promtool] not in the system's apt lists: fetching the lists into $CACHE/apt" >&2
  APT="$CACHE/apt"
  mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial"
  opts=(-o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o Debug::NoLocking=1)
  apt-get -q "${opts[@]}" update >&2
  apt-get -q "${opts[@]}" download "prometheus=$DEB_VERSION" >&2
fi
DEB="$(ls "$DL"/prometheus_*.deb)"
ARCH="$(dpkg --print-architecture)"
want_var="DEB_SHA256_$ARCH"
if [[ -n "${!want_var:-}" ]]; then
  got="$(sha256sum "$DEB" | cut -d' ' -f1)"
  if [[ "$got" != "${!want_var}" ]]; then
    echo "error: $DEB has sha256 $got, want ${!want_var}" >&2
    exit 1
  fi
fi
dpkg -x "$DEB" "$DL/root"
install -m 0755 "$DL/root/usr/bin/promtool" "$BIN/promtool.part"
mv -f "$BIN/promtool.part" "$BIN/promtool"  # atomic: a reader never sees a half-written binary

got="$("$BIN/promtool" --version 2>&1 | head -n1)"
if [[ "$got" != "promtool, version $PROMTOOL_VERSION"* ]]; then
  echo "error: unexpected version: '$got'" >&2
  exit 1
fi
touch "$MARKER"
echo "[promtool] installed into $BIN in $(( $(date +%s) - START ))s" >&2
version
echo "$BIN"
