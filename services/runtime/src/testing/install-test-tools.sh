#!/usr/bin/env bash
# `make test`'s set-up: the servers and tools the test harness starts from local binaries
# (PostgreSQL, Redis, NATS JetStream, Chromium for the browser tests, helm for the chart,
# etcd and the Kubernetes control plane for the chart's install test).
# Installs what is missing where it may (Debian/Ubuntu packages as root or through sudo,
# helm with `go install`); otherwise it names the command to run and stops before the tests.
set -euo pipefail

# Keep in step with charts/test/chart.test.ts.
HELM_VERSION=v3.16.3

have() { command -v "$1" >/dev/null 2>&1; }
# Node 24 for the tests and the mobile app comes from PyPI into a venv (deploy/node24/install.sh):
# Debian splits venv's ensurepip into python3-venv, which a new machine does not have.
have_python_venv() { have python3 && python3 -c 'import ensurepip, venv' >/dev/null 2>&1; }
have_initdb() { have initdb || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
have_chromium() { [ -x /usr/bin/chromium ] || have chromium; }

need=()
have_initdb || need+=(postgresql)
have redis-server || need+=(redis-server)
have nats-server || need+=(nats-server)
have_chromium || need+=(chromium)
# The browser tests' chromium: the headless shell, where the distribution packages it (Debian does).
have chromium-headless-shell || ! apt-cache show chromium-headless-shell >/dev/null 2>&1 || need+=(chromium-headless-shell)
# The chart's cluster test: etcd under a real kube-apiserver.
have etcd || [ -x /usr/bin/etcd ] || need+=(etcd-server)
have python3 || need+=(python3)
have_python_venv || need+=(python3-venv)
# The HTTP client's TLS tests make a throwaway certificate with it (not in a minimal Debian).
have openssl || need+=(openssl)

if [ ${#need[@]} -gt 0 ]; then
  install_cmd="apt-get install -y --no-install-recommends ${need[*]}"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if have sudo && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    elif have sudo && [ -t 0 ]; then
      echo "make test: sudo is needed to install ${need[*]}"
      sudo="sudo"
    else
      sudo=""
      cannot=1
    fi
  fi
  if ! have apt-get || [ "${cannot:-0}" = 1 ]; then
    echo "make test needs ${need[*]}, and cannot install them here (no apt-get, or neither root nor sudo)." >&2
    echo "Install them, then run make test again; on Debian or Ubuntu, as root:" >&2
    echo "  apt-get update && $install_cmd" >&2
    exit 1
  fi
  echo "make test: installing Debian packages: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# Go tools come from the module proxy, into GOPATH/bin, where the tests look when a tool is
# not on PATH. go_tool NAME MODULE VERSION: installs NAME unless it is there already.
gobin() { echo "$(go env GOPATH)/bin"; }
# The Go the harness's modules are written for (deploy/kube-harness/go.mod and sdk/go/go.mod say the
# same): Debian 12's golang-go is 1.19, which builds none of them, so it is not the package to install.
GO_MIN=1.26
go_too_old() { [ "$(printf '%s\n' "$GO_MIN" "$(go env GOVERSION | sed 's/^go//')" | sort -V | head -n1)" != "$GO_MIN" ]; }
no_go() {
  echo "make test needs Go $GO_MIN or later (https://go.dev/dl; Debian 12's golang-go is 1.19, too old)$1." >&2
  echo "Put its bin folder on PATH, then run make test again." >&2
  exit 1
}
if ! have go; then no_go " for helm, stripe-mock, kube-score, the chart's Kubernetes control plane and the Go SDK"
elif go_too_old; then no_go ", not $(go env GOVERSION)"
fi
go_tool() {
  local name=$1 module=$2 version=$3
  if have "$name" || [ -x "$(gobin)/$name" ]; then return; fi
  echo "make test: installing $name $version with go install"
  GOBIN="$(gobin)" go install "$module@$version"
}

# helm renders and lints the chart in the tests.
go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"

# stripe-mock checks the Stripe client's request shapes (services/payment/test/stripe-mock.test.ts).
# Keep in step with STRIPE_MOCK_VERSION in stripe-mock.ts.
STRIPE_MOCK_VERSION=v0.203.0
go_tool stripe-mock github.com/stripe/stripe-mock "$STRIPE_MOCK_VERSION"

# kube-score reviews the rendered chart (charts/test/chart.test.ts): no criticals but the
# ones values.yaml justifies. Keep in step with KUBE_SCORE_VERSION in charts/test/helm.ts.
KUBE_SCORE_VERSION=v1.20.0
go_tool kube-score github.com/zegl/kube-score/cmd/kube-score "$KUBE_SCORE_VERSION"

# promtool checks and unit-tests the chart's alerting rules (charts/test/alerts.test.ts):
# from Debian's prometheus package, unpacked into a cache rather than installed (the
# package would start a Prometheus server).
promtool_dir="${XDG_CACHE_HOME:-$HOME/.cache}/ttip-promtool"
if ! have promtool && [ ! -x "$promtool_dir/usr/bin/promtool" ]; then
  if ! have apt-get || ! have dpkg-deb; then
    echo "make test needs promtool (Prometheus' rule checker): install Debian's prometheus package, or put promtool on PATH" >&2
    exit 1
  fi
  echo "make test: unpacking promtool from Debian's prometheus package into $promtool_dir"
  deb_dir="$(mktemp -d)"
  chmod 777 "$deb_dir" # apt's download user writes there
  if ! (cd "$deb_dir" && apt-get download -qq prometheus >/dev/null 2>&1); then
    root=""
    [ "$(id -u)" -eq 0 ] || root="sudo -n"
    $root apt-get update -qq
    (cd "$deb_dir" && apt-get download -qq prometheus >/dev/null)
  fi
  mkdir -p "$promtool_dir"
  dpkg-deb -x "$deb_dir"/prometheus_*.deb "$promtool_dir"
  rm -rf "$deb_dir"
  "$promtool_dir/usr/bin/promtool" --version >/dev/null
fi

# The Kubernetes control plane and kwok for charts/test/kube.test.ts: built from source
# once per machine (minutes, niced) and cached outside the repo; later runs take a second.
# (Each result assigned before it is printed: a failure inside echo's argument would not stop set -e.)
kube_build="$(dirname "$0")/../../../../deploy/kube-harness/build.sh"
if [ -f "$kube_build" ]; then
  kube_dir=$(bash "$kube_build")
  echo "make test: Kubernetes control plane for the chart test in $kube_dir"
fi

# The Go and Python SDKs' generators, runtimes and pytest (sdk/tools.sh: the Go plugins with
# go install, a pip venv, cached per machine), and the Go SDK's modules, for sdk/test/*.test.ts.
sdk_dir="$(dirname "$0")/../../../../sdk"
if [ -f "$sdk_dir/tools.sh" ]; then
  sdk_tools=$(bash "$sdk_dir/tools.sh")
  echo "make test: SDK toolchains in $sdk_tools"
  (cd "$sdk_dir/go" && go mod download)
fi
