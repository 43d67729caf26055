// The tests' phone numbers: one generator for every service's tests (see testing/phones.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { isSimulatorMarker, PLAIN_PHONE_SUFFIX_FROM, testPhone } from "../src/testing/index.js";

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
