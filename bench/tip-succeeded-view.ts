// qr's scan-to-tip count reads three fields of each tip_succeeded (meta, tip and code), against its
// yardstick in the same process: the whole TipSucceeded decoded (decodeEvent, as qr did: three Money
// messages, the receipt, the message and the rest built) and countedTip (the contract's
// TipSucceededCodeView, the other fields skipped). Both are checked to read the same tip, code and time.
// Prints CPU nanoseconds per event and the ratio to the yardstick.
//   node --max-semi-space-size=32 --import tsx bench/tip-succeeded-view.ts [events per round=200000] [rounds=6]
import { deepStrictEqual } from "node:assert/strict";
import { TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { buildEvent, decodeEvent, type DeliveredMessage } from "@ttip/runtime";
import { countedTip } from "../services/qr/src/tips.js";
import { compareAlternated } from "./alternated.js";

const perRound = Number(process.argv[2] ?? 200_000);
const rounds = Number(process.argv[3] ?? 6);

const event = buildEvent("payment", TipSucceededSchema, {
  tipId: "0190c2a4-7e1f-7a8b-9c0d-112233445566", workerId: "0190c2a4-0000-7000-8000-000000000001", venueId: "0190c2a4-0000-7000-8000-000000000002",
  qrCodeId: "0190c2a4-0000-7000-8000-000000000003", amount: { amountMinor: 10_000n, currency: "KES" }, fee: { amountMinor: 150n, currency: "KES" },
  net: { amountMinor: 9_850n, currency: "KES" }, mpesaReceipt: "TLL1ABCDEF", customerPhoneMasked: "2547******78", rating: 5, message: "asante sana, chakula kitamu", createdBy: "",
}, "0190c2a4-7e1f-7a8b-9c0d-112233445566");
const delivered: DeliveredMessage = { ...event, deliveryCount: 1 };
const fields = (t: { tipId: string; qrCodeId: string; meta?: { occurredAt?: unknown } }) => [t.tipId, t.qrCodeId, t.meta?.occurredAt];
deepStrictEqual(fields(countedTip(event.data)), fields(decodeEvent(TipSucceededSchema, delivered)));

await compareAlternated(
  [
    ["decodeEvent(TipSucceeded) (before)", () => decodeEvent(TipSucceededSchema, delivered)],
    ["countedTip (the view)", () => countedTip(event.data)],
  ],
  perRound,
  rounds,
  "event",
);
