#!/usr/bin/env bash
# Fetch the real kustomize binary for the deploy tests, without touching the system's apt setup.
#
# usage: bash deploy/tools/fetch-kustomize.sh VENV_DIR
#
# Debian ships kustomize only from trixie (13) on; this machine may be older (bookworm).  The
# script points apt at a private trixie sources list, lists directory and cache (all under a
# temporary directory), downloads the one .deb with `apt-get download` and unpacks it with
# `dpkg -x` into VENV_DIR/kustomize.  Nothing is installed and /etc/apt is never modified.
# The tests look for VENV_DIR/kustomize/usr/bin/kustomize (or `kustomize` on PATH).
# Idempotent: exits at once when a working binary is already there.  Never fails the build:
# when kustomize cannot be had it says why and exits 0, and the render tests skip.
set -uo pipefail

venv="${1:-.venv}"
dest="$venv/kustomize"
bin="$dest/usr/bin/kustomize"
suite="${KUBEZEEK_KUSTOMIZE_SUITE:-trixie}"
mirror="${KUBEZEEK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  exit 0
fi
if command -v kustomize >/dev/null 2>&1; then
  echo "kustomize: using $(command -v kustomize)"
  exit 0
fi
if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
  echo "kustomize: no apt-get/dpkg here; deploy render tests will skip"
  exit 0
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
if [ ! -r "$keyring" ]; then
  echo "kustomize: $keyring missing; deploy render tests will skip"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/etc/preferences.d" "$tmp/deb"
echo "deb [signed-by=$keyring] $mirror $suite main" >"$tmp/sources.list"
: >"$tmp/status"
apt_opts=(
  -o "Dir::Etc::sourcelist=$tmp/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::Etc::preferencesparts=$tmp/etc/preferences.d"
  -o "Dir::State::Lists=$tmp/lists"
  -o "Dir::State::status=$tmp/status"
  -o "Dir::Cache=$tmp/cache"
  -o "APT::Get::List-Cleanup=false"
  -o "Debug::NoLocking=true"
  -qq
)

echo "kustomize: fetching Debian $suite's kustomize package into $dest"
if ! apt-get "${apt_opts[@]}" update >"$tmp/update.log" 2>&1; then
  echo "kustomize: apt-get update for $suite failed (no access to $mirror?); deploy render tests will skip"
  tail -3 "$tmp/update.log"
  exit 0
fi
if ! (cd "$tmp/deb" && apt-get "${apt_opts[@]}" download kustomize >"$tmp/download.log" 2>&1); then
  echo "kustomize: apt-get download kustomize failed; deploy render tests will skip"
  tail -3 "$tmp/download.log"
  exit 0
fi
rm -rf "$dest"
mkdir -p "$dest"
deb=("$tmp"/deb/kustomize_*.deb)
dpkg -x "${deb[0]}" "$dest"
dpkg-deb -f "${deb[0]}" Version >"$dest/DEBIAN_VERSION"
if ! "$bin" version >/dev/null 2>&1; then
  echo "kustomize: unpacked binary does not run here; deploy render tests will skip"
  rm -rf "$dest"
  exit 0
fi
echo "kustomize: Debian $suite package $(cat "$dest/DEBIAN_VERSION") at $bin"
