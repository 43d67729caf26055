// Which files make test runs together in one process: the entry's imports are the list.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { runTogether, togetherFiles, TOGETHER_ENTRIES } from "../src/testing/test-lanes.js";

const repo = fileURLToPath(new URL("../../../", import.meta.url));

test("the files run together are the entry's imports: a file added there runs there, not also alone; a run of some runs them alone", () => {
  const root = mkdtempSync(path.join(os.tmpdir(), "ttip-lanes-"));
  try {
    mkdirSync(path.join(root, "web"));
    const entry = "web/all.group.ts";
    writeFileSync(path.join(root, entry), 'import "./a.test.js";\nimport "./b.test.js";\n// import "./c.test.js"; is not one\nimport { x } from "./helpers.js";\n');
    const [a, b, c] = ["a", "b", "c"].map((n) => path.join(root, "web", `${n}.test.ts`));
    assert.deepEqual(togetherFiles(root, entry), ["web/a.test.ts", "web/b.test.ts"]);
    assert.deepEqual(runTogether([c, a, b], root, [entry]), [path.join(root, entry), c]);
    assert.deepEqual(runTogether([a, c], root, [entry]), [a, c], "b is not in this run: a runs alone");
    // A second entry: each whole group runs as its entry, both first; a group not whole runs its files alone.
    mkdirSync(path.join(root, "admin"));
    const second = "admin/all.group.ts";
    writeFileSync(path.join(root, second), 'import "./d.test.js";\nimport "./e.test.js";\n');
    const [d, e] = ["d", "e"].map((n) => path.join(root, "admin", `${n}.test.ts`));
    assert.deepEqual(runTogether([c, d, a, e, b], root, [entry, second]), [path.join(root, entry), path.join(root, second), c]);
    assert.deepEqual(runTogether([c, d, a, b], root, [entry, second]), [path.join(root, entry), c, d]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("each group's files exist: none is lost from both its group and the lanes", () => {
  for (const entry of TOGETHER_ENTRIES) {
    const files = togetherFiles(repo, entry);
    assert.ok(files.length >= 2, `the entry imports its files: ${files.join(", ")}`);
    for (const f of files) assert.ok(existsSync(path.join(repo, f)), `${entry} imports ${f}, which exists`);
    const all = files.map((f) => path.join(repo, f));
    assert.deepEqual(runTogether(all, repo), [path.join(repo, entry)]);
  }
});
