import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { uuidV4 } from "../src/uuid.js";

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
