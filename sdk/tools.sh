#!/usr/bin/env bash
# Installs (once per machine) what the Go and Python SDKs are generated and tested
# with, at pinned versions, outside the repo: protoc-gen-go and protoc-gen-connect-go
# with `go install` from the Go module proxy, and a Python venv with pip (protobuf-py's
# protoc-gen-py, protoc-gen-connectrpc, the connectrpc runtime and pytest).
# Prints the folder: go-bin/ holds the Go plugins, venv/ the Python environment.
# The cache is keyed by these pins and the Go and Python versions, so every clone
# and CI run on the machine reuses it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

# Keep in step with sdk/go/go.mod (the runtime the generated code is written for).
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION=v1.21.1
requirements="$here/python/requirements-dev.txt"

for tool in go python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "the Go and Python SDKs need $tool (Debian: apt-get install golang-go python3 python3-venv)" >&2; exit 1; }
done

cache_root="${TTIP_SDK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ttip-sdk}"
key=$( (echo "$PROTOC_GEN_GO_VERSION $PROTOC_GEN_CONNECT_GO_VERSION"; cat "$requirements"; go env GOVERSION; python3 --version) | sha256sum | cut -c1-16)
out="$cache_root/$key"
ready() { [ -x "$out/go-bin/protoc-gen-go" ] && [ -x "$out/go-bin/protoc-gen-connect-go" ] && [ -x "$out/venv/bin/protoc-gen-py" ] && [ -f "$out/.done" ]; }
if ready; then echo "$out"; exit 0; fi

mkdir -p "$cache_root"
# One install at a time per machine: a second caller waits, then finds the cache.
exec 9>"$cache_root/.lock"
flock 9
if ready; then echo "$out"; exit 0; fi

tmp="$(mktemp -d "$cache_root/.install.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp/go-bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION" >&2
GOBIN="$tmp/go-bin" go install "connectrpc.com/connect/cmd/protoc-gen-connect-go@$PROTOC_GEN_CONNECT_GO_VERSION" >&2
# The venv is made where it will live: its scripts carry their interpreter's absolute path.
rm -rf "$out" && mkdir -p "$out"
mv "$tmp/go-bin" "$out/go-bin"
python3 -m venv "$out/venv" >&2
"$out/venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$requirements" >&2
touch "$out/.done"
echo "$out"
