// qr's scan-to-tip count reads three fields of each tip_succeeded (meta, tip and code), against its
// yardstick in the same process: the whole TipSucceeded decoded (decodeEvent, as qr did: three Money
// messages, the receipt, the message and the rest built) and countedTip (the contract's
// TipSucceededCodeView, the other fields skipped). Both are checked to read the same tip, code and time.
// Prints CPU nanoseconds per event and the ratio to the yardstick.
//   node --max-semi-space-size=32 --import tsx bench/tip-succeeded-view.ts [events per round=200000] [rounds=6]
import { deepStrictEqual } from "node:assert/strict";
import os from "node:os";
import { TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { buildEvent, decodeEvent, type DeliveredMessage } from "@ttip/runtime";
import { countedTip } from "../services/qr/src/tips.js";

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

const ways: Array<[string, () => unknown]> = [
  ["decodeEvent(TipSucceeded) (before)", () => decodeEvent(TipSucceededSchema, delivered)],
  ["countedTip (the view)", () => countedTip(event.data)],
];

let kept: unknown;
function round(way: () => unknown): number {
  const start = process.cpuUsage();
  for (let i = 0; i < perRound; i++) kept = way();
  const used = process.cpuUsage(start);
  return ((used.user + used.system) * 1000) / perRound;
}

for (const [, way] of ways) round(way); // warm up
const ns = new Map<string, number[]>();
for (let r = 1; r <= rounds; r++) {
  for (const [name, way] of r % 2 ? ways : [...ways].reverse()) {
    const perEvent = round(way);
    ns.set(name, [...(ns.get(name) ?? []), perEvent]);
    console.log(`round ${r}  ${name.padEnd(36)} CPU ${perEvent.toFixed(0)} ns per event`);
  }
}
void kept;
const median = (list: number[]) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];
const [yardstick, ours] = ways.map(([name]) => median(ns.get(name)!));
console.log(`median CPU per event: ${yardstick.toFixed(0)} -> ${ours.toFixed(0)} ns (ratio ${(ours / yardstick).toFixed(3)}); load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
