// Auth's partner consumer judges every payment event by the one field naming who it concerns
// (mayReachPartner): the same answer as the whole event mapped (mapEvent), for every event.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";
import { fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import {
  PayoutFailedSchema,
  PayoutHeldSchema,
  PayoutSucceededSchema,
  TipCreatedSchema,
  TipFailedSchema,
  TipSucceededSchema,
} from "@ttip/proto/ttip/events/v1/events_pb.js";
import { buildEvent, subjectOf, type DeliveredMessage } from "@ttip/runtime";
import { mapEvent, mayReachPartner, stringField } from "../src/partners/fan-out.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** What mayReachPartner answered when it mapped the whole event. */
const mapped = (m: DeliveredMessage) => {
  const e = mapEvent(m);
  return e !== undefined && UUID.test(e.audience.kind === "tip" ? e.audience.createdBy : e.audience.workerId);
};
const delivered = (schema: DescMessage, init: Record<string, unknown>): DeliveredMessage => ({
  ...buildEvent(subjectOf(schema).split(".")[1], schema, init as never),
  deliveryCount: 1,
});
const money = { amountMinor: 5_000n, currency: "KES" };

describe("which events may have a partner to tell", () => {
  test("the one field read answers as the whole event mapped: a tip's key, a payout's worker, no one, someone not an id", () => {
    const names = ["", randomUUID(), randomUUID().toUpperCase(), "customer:2547", `${randomUUID()}x`];
    const cases: DeliveredMessage[] = [];
    for (const who of names) {
      const tip = { tipId: randomUUID(), workerId: randomUUID(), venueId: randomUUID(), qrCodeId: randomUUID(), amount: money, createdBy: who };
      cases.push(delivered(TipCreatedSchema, tip), delivered(TipSucceededSchema, { ...tip, fee: money, net: money, mpesaReceipt: "TLL1" }));
      cases.push(delivered(TipFailedSchema, { ...tip, resultCode: "1032", reason: "cancelled" }));
      const payout = { payoutId: randomUUID(), workerId: who, amount: money };
      cases.push(delivered(PayoutSucceededSchema, payout), delivered(PayoutFailedSchema, payout), delivered(PayoutHeldSchema, payout));
    }
    let reach = 0;
    for (const m of cases) {
      assert.equal(mayReachPartner(m), mapped(m), `${m.subject} ${m.id}`);
      if (mayReachPartner(m)) reach++;
    }
    assert.equal(reach, 2 * 5, "a key's three tip events and a worker's two payouts, for each of the two ids");
  });

  test("a field given twice reads as fromBinary reads it (the last); absent, empty; a message cut short or the field as a number throws", () => {
    const first = toBinary(TipCreatedSchema, fromBinary(TipCreatedSchema, delivered(TipCreatedSchema, { createdBy: randomUUID() }).data));
    const last = randomUUID();
    const twice = Buffer.concat([first, toBinary(TipCreatedSchema, fromBinary(TipCreatedSchema, delivered(TipCreatedSchema, { createdBy: last }).data))]);
    const createdBy = TipCreatedSchema.field.createdBy.number;
    assert.equal(fromBinary(TipCreatedSchema, twice).createdBy, last);
    assert.equal(stringField(twice, createdBy), last);
    assert.equal(stringField(delivered(TipCreatedSchema, { tipId: "t1" }).data, createdBy), "");
    assert.throws(() => stringField(twice.subarray(0, twice.length - 3), createdBy));
    assert.throws(() => fromBinary(TipCreatedSchema, twice.subarray(0, twice.length - 3)));
    assert.throws(() => stringField(new BinaryWriter().tag(createdBy, 0).uint32(7).finish(), createdBy), /not a string/);
  });
});
