// Nairobi days written as people type them: a typo is refused, not moved to another day.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { nairobiDayStart } from "../src/index.js";

describe("nairobiDayStart", () => {
  test("a day starts at its midnight in Nairobi, 21:00 UTC the evening before", () => {
    assert.equal(nairobiDayStart("2026-03-01")?.toISOString(), "2026-02-28T21:00:00.000Z");
    assert.equal(nairobiDayStart("2028-02-29")?.toISOString(), "2028-02-28T21:00:00.000Z", "a leap day");
  });
  test("a day no calendar has, or another shape, is refused: Date rolled 2026-02-31 over into 3 March", () => {
    for (const typed of ["2026-02-31", "2026-02-29", "2026-13-01", "2026-04-31", "2026-4-1", "01-03-2026", "2026-03-01T00:00", ""]) {
      assert.equal(nairobiDayStart(typed), undefined, typed);
    }
  });
});
