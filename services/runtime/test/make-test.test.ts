// `make test`'s recipe (the repository's Makefile) with stub targets: the tests and the
// type-check it runs beside them are one-line stand-ins, so this checks the recipe's order
// and exit status, not the suite. CI reads the last line: the tests' "N passed, N failed".
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const makefile = fileURLToPath(new URL("../../../Makefile", import.meta.url));

/** The Makefile's `test` rule, without its prerequisites (installs, lint). */
function testRule(): string {
  const rule = /^test:.*\n(?:\t.*\n)+/m.exec(readFileSync(makefile, "utf8"))?.[0];
  assert.ok(rule, "the Makefile has a test rule");
  return rule.replace(/^test:.*$/m, "test:");
}

/** `make test` with the tests and the type-check replaced by commands printing `tests` / `typecheck` and exiting with the given codes. */
function makeTest(tests: { out: string; code: number }, typecheck: { out: string; code: number }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "ttip-make-test-"));
  try {
    const stub = (s: { out: string; code: number }) => `\t@printf '%s\\n' '${s.out}'; exit ${s.code}\n`;
    // The runner writes its summary line where TTIP_TEST_SUMMARY_FILE says, as run-tests.ts does.
    const runner = `\t@printf '%s\\n' '${tests.out}' | tee "$$TTIP_TEST_SUMMARY_FILE"; exit ${tests.code}\n`;
    writeFileSync(path.join(dir, "Makefile"), `${testRule()}\ntypecheck:\n${stub(typecheck)}\ntest-node24:\n${runner}`);
    // NPM=true: the machine's Node run after (when it is not 24) prints nothing, as when it is 24.
    const run = spawnSync("make", ["--no-print-directory", "NPM=true", "test"], { cwd: dir, encoding: "utf8", timeout: 60_000 });
    return { code: run.status, lines: run.stdout.trimEnd().split("\n") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("the tests' summary is make test's last line, after the type-check's output", () => {
  const run = makeTest({ out: "3 passed, 0 failed", code: 0 }, { out: "npx tsc -p tsconfig.json", code: 0 });
  assert.equal(run.code, 0);
  assert.ok(run.lines.includes("npx tsc -p tsconfig.json"), "the type-check's output is printed");
  assert.equal(run.lines.at(-1), "3 passed, 0 failed");
});

test("a failing type-check fails make test, and the summary stays last", () => {
  const run = makeTest({ out: "3 passed, 0 failed", code: 0 }, { out: "src/a.ts(1,7): error TS2322", code: 2 });
  assert.notEqual(run.code, 0);
  assert.ok(run.lines.includes("src/a.ts(1,7): error TS2322"));
  assert.ok(run.lines.some((l) => l.startsWith("make typecheck failed")));
  assert.equal(run.lines.at(-1), "3 passed, 0 failed");
});

test("failing tests fail make test under a passing type-check", () => {
  const run = makeTest({ out: "2 passed, 1 failed", code: 1 }, { out: "", code: 0 });
  assert.notEqual(run.code, 0);
  assert.equal(run.lines.at(-1), "2 passed, 1 failed");
});
