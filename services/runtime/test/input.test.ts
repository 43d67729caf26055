import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { GetTrialBalanceRequestSchema } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { timestampOutOfRangeField } from "../src/input.js";

const request = (seconds: bigint, nanos = 0) => create(GetTrialBalanceRequestSchema, { asOf: { seconds, nanos } });

test("a Timestamp outside year 1 to 9999 is named by its field; the range's own ends pass", () => {
  for (const [seconds, nanos, expected] of [
    [0n, 0, undefined],
    [-62_135_596_800n, 0, undefined], // 0001-01-01T00:00:00Z
    [253_402_300_799n, 999_999_999, undefined], // 9999-12-31T23:59:59.999999999Z
    [253_402_300_800n, 0, "as_of"],
    [-62_135_596_801n, 0, "as_of"],
    [9_223_372_036_854_775_807n, 0, "as_of"],
    [0n, -1, "as_of"],
    [0n, 1_000_000_000, "as_of"],
  ] as const) {
    assert.equal(timestampOutOfRangeField(GetTrialBalanceRequestSchema, request(seconds, nanos)), expected, `${seconds}s ${nanos}ns`);
  }
  assert.equal(timestampOutOfRangeField(GetTrialBalanceRequestSchema, create(GetTrialBalanceRequestSchema)), undefined, "unset");
});
