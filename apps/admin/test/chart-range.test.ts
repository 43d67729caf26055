// The platform charts' days are Nairobi's, as analytics buckets them: the range
// starts and ends at midnight in Nairobi (21:00 UTC) and each bar is labelled
// with its Nairobi date, at any hour and in any browser zone.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CHART_DAYS, chartDayLabel, chartRange, monthsRange, periodLabel } from "../src/chart-range.js";

const at = (iso: string) => new Date(iso);
const iso = (r: { from: Date; to: Date }) => ({ from: r.from.toISOString(), to: r.to.toISOString() });

describe("the platform charts' range", () => {
  test("at 21:20 UTC on 30 November it is 1 December in Nairobi: the range ends at the next midnight in Nairobi", () => {
    assert.deepEqual(iso(chartRange(at("2026-11-30T21:20:00Z"))), { from: "2026-11-01T21:00:00.000Z", to: "2026-12-01T21:00:00.000Z" });
  });

  test("at 00:20 UTC on 1 December (03:20 in Nairobi), the same day and range", () => {
    assert.deepEqual(iso(chartRange(at("2026-12-01T00:20:00Z"))), { from: "2026-11-01T21:00:00.000Z", to: "2026-12-01T21:00:00.000Z" });
  });

  test("at 20:59 UTC it is still the same day in Nairobi (23:59); a January range crosses the year", () => {
    assert.deepEqual(iso(chartRange(at("2026-11-30T20:59:59Z"))), { from: "2026-10-31T21:00:00.000Z", to: "2026-11-30T21:00:00.000Z" });
    assert.deepEqual(iso(chartRange(at("2027-01-01T00:20:00Z"))), { from: "2026-12-02T21:00:00.000Z", to: "2027-01-01T21:00:00.000Z" });
  });

  test("the range is exactly the charts' number of whole days", () => {
    const { from, to } = chartRange(at("2026-11-30T21:20:00Z"));
    assert.equal(to.getTime() - from.getTime(), CHART_DAYS * 86_400_000);
  });

  test("a day's bucket starts at 21:00 UTC the evening before and is labelled with its Nairobi date", () => {
    assert.equal(chartDayLabel(at("2026-11-30T21:00:00Z")), "12-01");
    assert.equal(chartDayLabel(at("2026-12-31T21:00:00Z")), "01-01");
  });

  test("the revenue table's months: twelve Nairobi months, this one the last, starting at midnight in Nairobi, labelled with Nairobi's month", () => {
    // 21:20 UTC on 30 November is December in Nairobi: from 1 January, December the twelfth month.
    assert.equal(monthsRange(at("2026-11-30T21:20:00Z")).from.toISOString(), "2025-12-31T21:00:00.000Z");
    assert.equal(monthsRange(at("2027-01-01T00:20:00Z")).from.toISOString(), "2026-01-31T21:00:00.000Z");
    // Within analytics' 366 days on the last minute of any month (before: 13 months, refused).
    for (const end of ["2026-12-31T20:59:00Z", "2024-02-29T20:59:00Z", "2027-01-31T20:59:00Z"]) {
      const { from, to } = monthsRange(at(end));
      assert.ok(to.getTime() - from.getTime() <= 366 * 86_400_000, `${end}: ${from.toISOString()} to ${to.toISOString()}`);
    }
    assert.equal(periodLabel(at("2026-11-30T21:00:00Z"), true), "2026-12");
    assert.equal(periodLabel(at("2026-11-30T21:00:00Z"), false), "2026-12-01");
  });
});
