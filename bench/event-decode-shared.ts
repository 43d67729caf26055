// A tip's events as the consumers of one process decode them, against the yardstick in the same
// process: each consumer decoding its own delivery (fromBinary, as they do) and a candidate that
// decodes each event once per type in the process and shares it (kept by event id, the oldest of
// 512 forgotten first, handed out only for the same bytes, frozen so no consumer can change it
// under another; SHARED=plain: neither copied bytes nor frozen, the least it could cost). Per tip:
// tip_created read by analytics and auth's partner fan-out, tip_succeeded by those two and
// notification; each delivery its own copy of the bytes (as JetStream hands them over); analytics
// a few hundred events behind the others (its batches are paced). Then one consumer per event (a
// service alone in its process: cluster mode), where sharing can only cost.
// Measured at load 15-24, three runs: 1.19-1.24 in one process, 2.63-2.83 alone (plain: 0.94-1.09
// and 2.09-2.29; with a ring of ids instead of BoundedMap's eviction the same). A decode is 2-4 us;
// the events kept alive until the last consumer comes cost the collector about as much: not made.
// Prints CPU nanoseconds per tip (per event) and the ratio to the yardstick.
//   node --max-semi-space-size=32 --import tsx bench/event-decode-shared.ts [tips per round=50000] [rounds=6] [analytics' lag in tips=150]
import { randomUUID } from "node:crypto";
import { deepStrictEqual } from "node:assert/strict";
import { fromBinary, type DescMessage } from "@bufbuild/protobuf";
import { PaymentMethod, TipCreatedSchema, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { BoundedMap, buildEvent } from "@ttip/runtime";
import { compareRounds, type Round } from "./alternated.js";

const perRound = Number(process.argv[2] ?? 50_000);
const rounds = Number(process.argv[3] ?? 6);
const lag = Number(process.argv[4] ?? 150);

const ids = { workerId: randomUUID(), venueId: randomUUID(), qrCodeId: randomUUID() };
const amount = { amountMinor: 10_000n, currency: "KES" };
/** Payloads of a few tips, each consumer's delivery a copy of its own. */
const PAYLOADS = 64;
const tips = Array.from({ length: PAYLOADS }, () => {
  const tipId = randomUUID();
  const created = buildEvent("payment", TipCreatedSchema, { tipId, ...ids, amount, method: PaymentMethod.MPESA, createdBy: "" }, tipId).data;
  const succeeded = buildEvent("payment", TipSucceededSchema, {
    tipId, ...ids, amount, fee: { amountMinor: 150n, currency: "KES" }, net: { amountMinor: 9_850n, currency: "KES" },
    mpesaReceipt: "TLL1ABCDEF", customerPhoneMasked: "2547******78", rating: 5, message: "asante sana", createdBy: "",
  }, tipId).data;
  const copies = (data: Uint8Array) => [0, 1, 2].map(() => Buffer.from(data));
  return { created: copies(created), succeeded: copies(succeeded) };
});

type Decode = (schema: DescMessage, id: string, data: Uint8Array) => unknown;
const own: Decode = (schema, _id, data) => fromBinary(schema, data);
const plain = process.env.SHARED === "plain";
const sharedDecodes = new WeakMap<DescMessage, BoundedMap<string, { data: Uint8Array; event: unknown }>>();
const shared: Decode = (schema, id, data) => {
  let decoded = sharedDecodes.get(schema);
  if (!decoded) sharedDecodes.set(schema, (decoded = new BoundedMap(512)));
  const kept = decoded.get(id);
  if (kept !== undefined && (plain ? kept.data.length === data.length : Buffer.from(kept.data.buffer, kept.data.byteOffset, kept.data.byteLength).equals(data))) return kept.event;
  const event = plain ? fromBinary(schema, data) : frozen(fromBinary(schema, data));
  decoded.set(id, { data: plain ? data : Buffer.from(data), event });
  return event;
};
/** `value` frozen with every object it holds, bytes excepted. */
function frozen<T>(value: T): T {
  if (typeof value !== "object" || value === null || ArrayBuffer.isView(value)) return value;
  for (const field of Object.values(value)) frozen(field);
  return Object.freeze(value);
}
deepStrictEqual(shared(TipSucceededSchema, "check", tips[0].succeeded[0]), own(TipSucceededSchema, "check", tips[0].succeeded[1]));

let kept: unknown;
/** A round of `tips` tips: event ids made fresh (a new tip each), analytics `lag` tips behind. */
const inOneProcess = (decode: Decode): Round => (calls) => {
  const eventIds: [string, string][] = [];
  for (let i = 0; i < calls + lag; i++) {
    if (i < calls) {
      const t = tips[i % PAYLOADS];
      const created = randomUUID();
      const succeeded = randomUUID();
      eventIds.push([created, succeeded]);
      kept = decode(TipCreatedSchema, created, t.created[0]); // auth
      kept = decode(TipSucceededSchema, succeeded, t.succeeded[0]); // notification
      kept = decode(TipSucceededSchema, succeeded, t.succeeded[1]); // auth
    }
    const behind = i - lag;
    if (behind >= 0) {
      const t = tips[behind % PAYLOADS];
      const [created, succeeded] = eventIds[behind];
      kept = decode(TipCreatedSchema, created, t.created[2]); // analytics
      kept = decode(TipSucceededSchema, succeeded, t.succeeded[2]);
    }
  }
};
/** A round where each event has one consumer in the process. */
const alone = (decode: Decode): Round => (calls) => {
  for (let i = 0; i < calls; i++) kept = decode(TipSucceededSchema, randomUUID(), tips[i % PAYLOADS].succeeded[0]);
};

console.log("a tip's events in one process (2 events, 5 deliveries a tip):");
await compareRounds([["each consumer decodes (before)", inOneProcess(own)], ["decoded once, shared", inOneProcess(shared)]], perRound, rounds, "tip");
console.log("one consumer per event (a service alone in its process):");
await compareRounds([["fromBinary (before)", alone(own)], ["decoded once, shared", alone(shared)]], perRound, rounds, "event");
void kept;
