import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { timeOrderedUuid, uuidV4 } from "../src/uuid.js";

const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("uuidV4", () => {
  test("gives version-4 UUIDs in lower case, as crypto.randomUUID does, each new, across many draws of entropy", () => {
    const ids = Array.from({ length: 1000 }, () => uuidV4()); // 1000 ids: several draws of 128
    for (const id of ids) assert.match(id, V4);
    assert.equal(new Set(ids).size, ids.length, "no id repeats");
    // Every hex digit outside the version and variant varies: the bytes are random, not a pattern.
    for (const at of [0, 7, 9, 15, 20, 35]) assert.ok(new Set(ids.map((id) => id[at])).size > 8, `position ${at}`);
  });

  test("an id is its own string: the next one does not change it", () => {
    const first = uuidV4();
    const copy = `${first}`.split("").join("");
    uuidV4();
    assert.equal(first, copy);
  });
});

describe("timeOrderedUuid", () => {
  test("gives version-7 UUIDs with the millisecond in the first 48 bits, each new, drawn between version-4 ones from the same entropy", () => {
    const at = Date.UTC(2026, 11, 1, 9, 40, 0, 123);
    const ids = Array.from({ length: 1000 }, (_, i) => (i % 2 ? uuidV4() : timeOrderedUuid(at)));
    for (const [i, id] of ids.entries()) {
      if (i % 2) {
        assert.match(id, V4);
        continue;
      }
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(parseInt(id.slice(0, 8) + id.slice(9, 13), 16), at, id);
    }
    assert.equal(new Set(ids).size, ids.length, "no id repeats");
  });

  test("sort in time order as text (PostgreSQL's order for uuid), up to the 48 bits' last millisecond", () => {
    const times = [0, 1, 255, 256, 2 ** 32, 2 ** 40, 1_764_549_600_000, 1_764_549_600_001, 2 ** 48 - 1];
    const ids = times.map((t) => timeOrderedUuid(t));
    assert.deepEqual([...ids].sort(), ids);
    assert.deepEqual(ids.map((id) => parseInt(id.slice(0, 8) + id.slice(9, 13), 16)), times);
  });
});
