#!/usr/bin/env bash
# Regenerates the Go and Python SDKs' code from proto/ with buf and the local
# plugins sdk/tools.sh installs (nothing remote). Run from anywhere.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$(bash "$root/sdk/tools.sh")"
cd "$root"
export PATH="$tools/go-bin:$tools/venv/bin:$root/node_modules/.bin:$PATH"
for lang in go python; do
  if [ -f "sdk/$lang/buf.gen.yaml" ]; then buf generate --template "sdk/$lang/buf.gen.yaml"; fi
done
