// The days, weeks and wall-clock times the web app and the mobile app show and
// read are Nairobi's, whatever zone the browser or phone is set to (the test
// machine's is UTC). The instants are the dangerous ones: UTC's last hours of a
// day or month (already tomorrow in Nairobi), a Sunday evening in UTC (Monday in
// Nairobi), a year's first minutes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { fromNairobiWallTime, nairobiDateTime, nairobiDay, nairobiDayStart, nairobiWallTime, nairobiWeekStart } from "../src/lib/nairobi-time.js";
import { inputTime, localTime, shown } from "../src/app/v/util.js";

const at = (iso: string) => new Date(iso);

test("a Nairobi day starts at 21:00 UTC the evening before", () => {
  assert.equal(nairobiDayStart(at("2026-11-30T21:20:00Z")).toISOString(), "2026-11-30T21:00:00.000Z");
  assert.equal(nairobiDayStart(at("2026-12-01T00:20:00Z")).toISOString(), "2026-11-30T21:00:00.000Z");
  assert.equal(nairobiDayStart(at("2026-11-30T20:59:59Z")).toISOString(), "2026-11-29T21:00:00.000Z");
  assert.equal(nairobiDay(at("2026-12-31T21:00:00Z")), "2027-01-01");
  assert.equal(nairobiDay(at("2026-12-31T20:59:59Z")), "2026-12-31");
});

test("a Nairobi week starts on Monday at midnight there: at 21:20 UTC on a Sunday the new week has begun", () => {
  // 31 January 2027 is a Sunday; 21:20 UTC is 00:20 on Monday 1 February in Nairobi.
  assert.equal(nairobiWeekStart(at("2027-01-31T21:20:00Z")).toISOString(), "2027-01-31T21:00:00.000Z");
  assert.equal(nairobiWeekStart(at("2027-01-31T20:59:00Z")).toISOString(), "2027-01-24T21:00:00.000Z");
  assert.equal(nairobiWeekStart(at("2027-02-01T00:20:00Z")).toISOString(), "2027-01-31T21:00:00.000Z");
  assert.equal(nairobiWeekStart(at("2027-02-06T20:00:00Z")).toISOString(), "2027-01-31T21:00:00.000Z", "Saturday evening is the same week");
});

test("wall-clock times read and written as Nairobi's; a day or hour that does not exist is refused, not moved", () => {
  assert.equal(nairobiWallTime(at("2026-11-30T21:20:00Z")), "2026-12-01T00:20");
  assert.equal(nairobiDateTime(at("2026-12-31T21:00:07Z")), "2027-01-01 00:00:07");
  assert.equal(fromNairobiWallTime("2026-12-01T00:20")?.toISOString(), "2026-11-30T21:20:00.000Z");
  assert.equal(fromNairobiWallTime("2027-01-01T00:00:30")?.toISOString(), "2026-12-31T21:00:30.000Z");
  for (const bad of ["", "2026-02-30T10:00", "2026-12-01T24:00", "2026-12-01 10:00", "2026-12-01T10:00Z"]) assert.equal(fromNairobiWallTime(bad), undefined, bad);
});

test("the venue screens' fields and dates are Nairobi's, not the browser's zone", () => {
  // A shift typed as 1 December 00:20 is 21:20 UTC on 30 November, the month a Kenyan manager means.
  assert.equal(timestampDate(localTime("2026-12-01T00:20")!).toISOString(), "2026-11-30T21:20:00.000Z");
  assert.equal(localTime("2026-02-30T10:00"), undefined);
  assert.equal(inputTime(at("2026-11-30T21:20:00Z")), "2026-12-01T00:20");
  assert.match(shown(localTime("2026-12-01T00:20"), "en"), /1 Dec 2026.*00:20/);
});

test("a Swahili venue screen shows its dates in Swahili, on Nairobi's clock", () => {
  // The words around a date are Swahili ("Imerudishwa {when}"): the month must be too, not en-KE's "Dec".
  assert.match(shown(localTime("2026-12-01T00:20"), "sw"), /1 Des 2026.*00:20/);
});
