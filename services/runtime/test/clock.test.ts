import assert from "node:assert/strict";
import { test } from "node:test";
import { AdjustableClock, systemClock } from "../src/clock.js";
import { clockOf } from "../src/service.js";

test("AdjustableClock runs with the system's, moves forward on advance(), never back", () => {
  const clock = new AdjustableClock();
  const before = Date.now();
  assert.ok(clock.now() >= before && clock.now() - before < 1_000);
  clock.advance(2_100);
  assert.ok(clock.now() - Date.now() >= 2_100 && clock.now() - Date.now() < 3_100);
  for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => clock.advance(bad), RangeError);
  assert.equal(clockOf({}), systemClock, "a context without a clock reads the system's");
  assert.equal(clockOf({ clock }), clock);
});
