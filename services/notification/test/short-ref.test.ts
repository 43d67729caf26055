import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { timeOrderedUuid } from "@ttip/runtime";
import { shortRef } from "../src/triggers.js";

describe("shortRef (the reference of a held tip's SMS)", () => {
  test("tells apart tips made in the same millisecond: time-ordered ids share their first digits", () => {
    const at = Date.now();
    const refs = Array.from({ length: 100 }, () => shortRef(timeOrderedUuid(at)));
    assert.equal(new Set(refs).size, refs.length);
    for (const ref of refs) assert.match(ref, /^[0-9A-F]{10}$/);
  });
});
