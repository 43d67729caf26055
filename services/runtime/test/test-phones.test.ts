// The tests' phone numbers: one generator for every service's tests (see testing/phones.ts).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { isSimulatorMarker, PLAIN_PHONE_SUFFIX_FROM, TEST_PHONES_DIR_ENV, testPhone } from "../src/testing/index.js";

test("testPhone: Safaricom-shaped in the three ways tests write numbers, never twice, never ending as a simulator's marker", () => {
  assert.match(testPhone({ format: "07" }), /^07\d{8}$/);
  assert.match(testPhone(), /^2547\d{8}$/);
  assert.match(testPhone({ format: "+254" }), /^\+2547\d{8}$/);
  // Enough draws that the old generators (random or clock-based eight digits) ended on a marker or repeated.
  const numbers = Array.from({ length: 5000 }, () => testPhone());
  assert.equal(new Set(numbers.map((n) => n.slice(-9))).size, numbers.length, "no number twice");
  assert.deepEqual(numbers.filter((n) => isSimulatorMarker(n.slice(-4))), [], "no Daraja script, no SMS refusal");
  assert.ok(numbers.every((n) => Number(n.slice(-4)) >= PLAIN_PHONE_SUFFIX_FROM));
});

test("testPhone with a marker: ends in it, still never twice, whatever the format", () => {
  const lost = Array.from({ length: 500 }, (_, i) => testPhone({ format: i % 2 ? "07" : "+254", suffix: "0003" }));
  assert.ok(lost.every((n) => n.endsWith("0003")));
  assert.equal(new Set(lost.map((n) => n.slice(-9))).size, lost.length);
  assert.throws(() => testPhone({ suffix: "3" }), /a phone suffix is four digits, not "3"/);
  assert.deepEqual(["0000", "0003", "1032", "2001", "4999", "5000", "5678"].map(isSimulatorMarker), [true, true, true, true, true, false, false]);
});

test("testPhone in two test files' processes of one run: never the same number in both", async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "ttip-phones-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const drawer = fileURLToPath(new URL("./fixtures/draw-phones.ts", import.meta.url));
  // 3,000 each of a marker's 10,000 numbers: two independent draws would share about 900.
  const draw = () =>
    promisify(execFile)(process.execPath, [...process.execArgv, drawer, "3000", "0003"], { env: { ...process.env, [TEST_PHONES_DIR_ENV]: dir } })
      .then(({ stdout }) => JSON.parse(stdout) as string[]);
  const [a, b] = await Promise.all([draw(), draw()]);
  assert.equal(a.length + b.length, 6000);
  assert.equal(new Set([...a, ...b]).size, 6000, "no number in both files");
});
