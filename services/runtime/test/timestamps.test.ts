// optionalTimestamp, case by case: absent times stay unset, present ones keep their milliseconds.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { optionalTimestamp } from "../src/index.js";

describe("optionalTimestamp", () => {
  const cases: { name: string; date: Date | null | undefined; want: { seconds: bigint; nanos: number } | undefined }[] = [
    { name: "null stays unset", date: null, want: undefined },
    { name: "undefined stays unset", date: undefined, want: undefined },
    { name: "the epoch is a time, not an absence", date: new Date(0), want: { seconds: 0n, nanos: 0 } },
    { name: "milliseconds become nanos", date: new Date("2026-03-01T08:30:15.123Z"), want: { seconds: 1772353815n, nanos: 123_000_000 } },
    { name: "before the epoch", date: new Date(-1_500), want: { seconds: -2n, nanos: 500_000_000 } },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const got = optionalTimestamp(c.date);
      assert.deepEqual(got === undefined ? undefined : { seconds: got.seconds, nanos: got.nanos }, c.want);
    });
  }
});
