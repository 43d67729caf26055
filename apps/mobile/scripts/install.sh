#!/usr/bin/env bash
# Installs the mobile app's own npm project with the mobile toolchain's Node. It is
# not a root workspace, so the root `npm ci` (make run) never downloads React Native;
# `make test` and `make mobile` run this. Install scripts are not run (npm may refuse
# them here): nothing the app, its tests or its web build use needs one.
set -euo pipefail
app=$(cd "$(dirname "$0")/.." && pwd)
bin=$("$app/scripts/node24.sh")
export PATH="$bin:$PATH"
stamp="$app/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$app/package-lock.json" -nt "$stamp" ] || [ "$app/package.json" -nt "$stamp" ]; then
  (cd "$app" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
fi
