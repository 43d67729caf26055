import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { timeOrderedUuid } from "../src/entry-ids.js";
import { UUID } from "../src/ledger.js";

describe("journal entry ids", () => {
  test("are UUIDs version 7 (RFC 9562): the millisecond in the first 48 bits, the variant bits 10, distinct within a millisecond", () => {
    const at = Date.UTC(2026, 11, 1, 0, 40, 0, 123);
    const ids = Array.from({ length: 10_000 }, () => timeOrderedUuid(at));
    for (const id of ids.slice(0, 100)) {
      assert.match(id, UUID);
      assert.equal(id[14], "7", id);
      assert.match(id[19], /[89ab]/, id);
      assert.equal(parseInt(id.slice(0, 8) + id.slice(9, 13), 16), at, id);
    }
    assert.equal(new Set(ids).size, ids.length);
  });

  test("sort in time order as lowercase text, the order of their bytes (PostgreSQL's for uuid)", () => {
    const times = [0, 1, 255, 256, 2 ** 40, 1_764_549_600_000, 1_764_549_600_001, 2 ** 48 - 1];
    const ids = times.map((t) => timeOrderedUuid(t));
    assert.deepEqual([...ids].sort(), ids);
  });
});
