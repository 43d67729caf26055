#!/usr/bin/env bash
# Runs a command in apps/mobile with the mobile toolchain's Node 24 first on PATH.
set -euo pipefail
app=$(cd "$(dirname "$0")/.." && pwd)
bin=$("$app/scripts/node24.sh")
cd "$app"
PATH="$bin:$PATH" exec "$@"
