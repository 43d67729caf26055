// Auth's partner consumer judges each payment event (mayReachPartner: does it name a key or a
// worker a partner may hear of?), against its yardstick in the same process: the whole event
// mapped as before (mapEvent: decoded, the webhook's data built) and the one field read
// (stringField). Per tip, a customer's tip_created and tip_succeeded (no key: no partner).
// Both are checked to answer the same. Prints CPU nanoseconds per tip and the ratio.
//   node --max-semi-space-size=32 --import tsx bench/partner-audience.ts [tips per round=100000] [rounds=6]
import { randomUUID } from "node:crypto";
import { deepStrictEqual } from "node:assert/strict";
import { PaymentMethod, TipCreatedSchema, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { buildEvent, type DeliveredMessage } from "@ttip/runtime";
import { mapEvent, mayReachPartner } from "../services/auth/src/partners/fan-out.js";
import { compareAlternated } from "./alternated.js";

const perRound = Number(process.argv[2] ?? 100_000);
const rounds = Number(process.argv[3] ?? 6);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const tipId = randomUUID();
const tip = { tipId, workerId: randomUUID(), venueId: randomUUID(), qrCodeId: randomUUID(), amount: { amountMinor: 10_000n, currency: "KES" }, createdBy: "" };
const events: DeliveredMessage[] = [
  buildEvent("payment", TipCreatedSchema, { ...tip, method: PaymentMethod.MPESA }, tipId),
  buildEvent("payment", TipSucceededSchema, {
    ...tip, fee: { amountMinor: 150n, currency: "KES" }, net: { amountMinor: 9_850n, currency: "KES" },
    mpesaReceipt: "TLL1ABCDEF", customerPhoneMasked: "2547******78", rating: 5, message: "asante sana",
  }, tipId),
].map((e) => ({ ...e, data: Buffer.from(e.data), deliveryCount: 1 }));

/** mayReachPartner as it was: the whole event mapped. */
const mapped = (m: DeliveredMessage) => {
  const e = mapEvent(m);
  return e !== undefined && UUID.test(e.audience.kind === "tip" ? e.audience.createdBy : e.audience.workerId);
};
deepStrictEqual(events.map(mayReachPartner), events.map(mapped));

await compareAlternated(
  [
    ["mapEvent (before)", () => mapped(events[0]) || mapped(events[1])],
    ["one field read", () => mayReachPartner(events[0]) || mayReachPartner(events[1])],
  ],
  perRound,
  rounds,
  "tip",
);
