import assert from "node:assert/strict";
import { test } from "node:test";
import { BoundedMap } from "../src/bounded-map.js";

test("a bounded map forgets its oldest entry when a new key comes in full, never a key set again", () => {
  const map = new BoundedMap<string, number>(2);
  map.set("a", 1).set("b", 2);
  map.set("a", 10); // a key already held: nothing forgotten
  assert.deepEqual([...map], [["a", 10], ["b", 2]]);
  map.set("c", 3);
  assert.deepEqual([...map], [["b", 2], ["c", 3]], "the oldest (a) goes, the rest stay");
  assert.equal(map.size, 2);
  assert.throws(() => new BoundedMap(0), RangeError);
});
