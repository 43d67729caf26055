#!/usr/bin/env bash
# Builds (once) the Kubernetes control plane the chart test installs into:
# kube-apiserver, kube-controller-manager and kube-scheduler from this folder's
# go.mod (k8s.io/kubernetes; `go install` of them refuses because of its staging
# replaces), and kwok from the Go module proxy to fake nodes and running pods.
# Prints the folder holding the binaries. The build is cached outside the
# repo, keyed by go.mod, go.sum and the Go version, so every clone and CI run
# on the machine reuses it: the first build takes minutes, the next ones none.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
KWOK_VERSION=v0.8.0
KUBE_VERSION=v1.37.2
# The ServiceMonitor and PrometheusRule CRDs the chart's objects are validated against.
PROMETHEUS_OPERATOR_VERSION=v0.85.0
cache_root="${TTIP_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ttip-kube}"
key=$( (cat "$here/go.mod" "$here/go.sum"; go env GOVERSION; echo "$KWOK_VERSION $PROMETHEUS_OPERATOR_VERSION") | sha256sum | cut -c1-16)
out="$cache_root/$key"
tools=(kube-apiserver kube-controller-manager kube-scheduler kwok)

have_all() { for t in "${tools[@]}"; do [ -x "$out/$t" ] || return 1; done; [ -s "$out/kwok-stages.yaml" ] && [ -d "$out/crds" ]; }
if have_all; then echo "$out"; exit 0; fi

mkdir -p "$cache_root"
# One build at a time per machine: a second caller waits, then finds the cache.
exec 9>"$cache_root/.lock"
flock 9
if have_all; then echo "$out"; exit 0; fi

tmp="$(mktemp -d "$cache_root/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
ver="k8s.io/component-base/version"
minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
# Niced: the build shares the machine's cores with everyone's tests.
(cd "$here" && nice -n 19 go build -trimpath -o "$tmp/" \
  -ldflags "-s -w -X $ver.gitVersion=$KUBE_VERSION -X $ver.gitMajor=1 -X $ver.gitMinor=$minor -X $ver.gitTreeState=clean" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler) >&2
GOBIN="$tmp" nice -n 19 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2
echo "built ${tools[*]} in $(( $(date +%s) - start )) s" >&2

# kwok's standalone binary has no stages built in: the ones kwokctl uses by
# default (nodes Ready with heartbeats; pods Running, Ready, Job pods Succeeded).
kwok_dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  echo "---"; cat "$kwok_dir/kustomize/stage/$f"
done > "$tmp/kwok-stages.yaml"
op_dir=$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
mkdir -p "$tmp/crds"
for crd in servicemonitors prometheusrules; do
  cp "$op_dir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" "$tmp/crds/"
done

mkdir -p "$out"
for t in "${tools[@]}" kwok-stages.yaml crds; do rm -rf "${out:?}/$t"; mv "$tmp/$t" "$out/$t"; done
echo "$out"
