// A distribution's "how" line says "=" only when the share is exactly its weight's part of the pool.
import assert from "node:assert/strict";
import { test } from "node:test";
import { shareSign } from "../src/app/v/util.js";

test("a share that rounding moved reads as approximate, an exact one as equal", () => {
  assert.equal(shareSign(1n, 1n, 500_00n, 500_00n), "=", "the whole pool");
  assert.equal(shareSign(1n, 2n, 500_00n, 250_00n), "=", "an exact half");
  assert.equal(shareSign(2n, 3n, 500_00n, 333_00n), "≈", "333.33 paid as 333");
  assert.equal(shareSign(1n, 3n, 500_00n, 167_00n), "≈", "166.67 paid as 167 with a shilling from rounding");
  assert.equal(shareSign(1n, 2n, 500_00n, 251_00n), "≈", "exact part, but the share holds more");
  assert.equal(shareSign(0n, 0n, 500_00n, 0n), "≈", "no weights: nothing to claim");
});
