// Which files make test runs together in one process: the entry's imports are the list.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { runTogether, togetherFiles, TOGETHER_ENTRY } from "../src/testing/test-lanes.js";

const repo = fileURLToPath(new URL("../../../", import.meta.url));

test("the files run together are the entry's imports: a file added there runs there, not also alone; a run of some runs them alone", () => {
  const root = mkdtempSync(path.join(os.tmpdir(), "ttip-lanes-"));
  try {
    mkdirSync(path.join(root, "web"));
    const entry = "web/all.group.ts";
    writeFileSync(path.join(root, entry), 'import "./a.test.js";\nimport "./b.test.js";\n// import "./c.test.js"; is not one\nimport { x } from "./helpers.js";\n');
    const [a, b, c] = ["a", "b", "c"].map((n) => path.join(root, "web", `${n}.test.ts`));
    assert.deepEqual(togetherFiles(root, entry), ["web/a.test.ts", "web/b.test.ts"]);
    assert.deepEqual(runTogether([c, a, b], root, entry), [path.join(root, entry), c]);
    assert.deepEqual(runTogether([a, c], root, entry), [a, c], "b is not in this run: a runs alone");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("the browser group's files all exist: none is lost from both the group and the lanes", () => {
  const files = togetherFiles(repo);
  assert.ok(files.length >= 2, `the entry imports its files: ${files.join(", ")}`);
  for (const f of files) assert.ok(existsSync(path.join(repo, f)), `${TOGETHER_ENTRY} imports ${f}, which exists`);
  const all = files.map((f) => path.join(repo, f));
  assert.deepEqual(runTogether(all, repo), [path.join(repo, TOGETHER_ENTRY)]);
});
