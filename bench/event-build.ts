// Ids and events as a tip makes them: the runtime's uuidV4 against crypto.randomUUID (the
// yardstick), timeOrderedUuid against the wallet's entry id as it was cut from one, and
// buildEvent against the way it built an event before (randomUUID, the subject split to check
// its producer, init copied with the meta), alternated in one process; and buildEvent against
// itself with its EventMeta made and encoded through protobuf-es (as it was before event-meta.ts
// wrote the meta by hand), for payment's TipSucceeded and notification's DeliveryUpdated.
// Prints CPU nanoseconds and heap bytes per id or event (what is kept counted too), and the ratios.
//   node --min-semi-space-size=256 --max-semi-space-size=256 --import tsx bench/event-build.ts [rounds=5] [per round=5000]
import { randomUUID } from "node:crypto";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { DeliveryUpdatedSchema, EventMetaSchema, TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { buildEvent, subjectOf, timeOrderedUuid, uuidV4 } from "@ttip/runtime";

const rounds = Number(process.argv[2] ?? 5);
const perRound = Number(process.argv[3] ?? 5_000);

/** CPU ns and heap bytes per call of `make`, its answers kept (a scavenge during a round: measured again). */
function perCall(make: () => unknown): { ns: number; bytes: number } {
  for (;;) {
    const kept = new Array<unknown>(perRound);
    const heap0 = process.memoryUsage().heapUsed;
    const start = process.cpuUsage();
    for (let i = 0; i < perRound; i++) kept[i] = make();
    const used = process.cpuUsage(start);
    const heap1 = process.memoryUsage().heapUsed;
    if (heap1 > heap0) return { ns: ((used.user + used.system) * 1000) / perRound, bytes: (heap1 - heap0) / perRound };
  }
}

const init = { tipId: "0b6f4c1e-8d3a-4f7e-9c2b-5a1d2e3f4a5b", workerId: "5a1d2e3f-8d3a-4f7e-9c2b-0b6f4c1e4a5b", createdBy: "key-1", mpesaReceipt: "SGH12345XY" };

/** The wallet's time-ordered entry id as it was made: a version 4 id's text cut and joined behind the time's. */
function timeOrderedBefore(now = Date.now()): string {
  const random = randomUUID();
  const time = now.toString(16).padStart(12, "0");
  return `${time.slice(0, 8)}-${time.slice(8, 12)}-7${random.slice(15)}`;
}

/** buildEvent as it was: randomUUID, the subject split, init copied with the meta. */
function buildEventBefore(producer: string) {
  const subject = subjectOf(TipSucceededSchema);
  if (subject.split(".")[1] !== producer) throw new Error("not its producer");
  const id = randomUUID();
  const meta = create(EventMetaSchema, { id, occurredAt: timestampNow(), producer, correlationId: "" });
  const message = create(TipSucceededSchema, { ...init, meta } as unknown as MessageInitShape<typeof TipSucceededSchema>);
  return { id, subject, data: toBinary(TipSucceededSchema, message) };
}

/**
 * buildEvent as it was before its meta was written by hand: made as a message (and its Timestamp) and
 * set on the message made from init, then encoded with the rest. Set, not spread into a copy: a copy
 * of the message ({ ...made, meta }) costs about 800 more bytes and half again the CPU per event.
 */
function buildEventStockMeta<D extends typeof TipSucceededSchema | typeof DeliveryUpdatedSchema>(producer: string, schema: D, init: MessageInitShape<D>) {
  const subject = subjectOf(schema);
  const id = timeOrderedUuid();
  const meta = create(EventMetaSchema, { id, occurredAt: timestampNow(), producer, correlationId: "req-3f1b2c4d5e6f" });
  const made = create(schema, init);
  const message = (made === (init as unknown) ? { ...made } : made) as typeof made & { meta?: unknown };
  message.meta = meta;
  return { id, subject, data: toBinary(schema, message) };
}

const delivery = { deliveryId: "019ad6a1-7c2e-7b3f-9d4e-5a6b7c8d9e0f", userId: "5a1d2e3f-8d3a-4f7e-9c2b-0b6f4c1e4a5b", channel: "sms", status: "sent", templateKey: "tip_received", attempt: 1 };

const line = (what: string, before: { ns: number; bytes: number }, after: { ns: number; bytes: number }) =>
  `${what} ${before.ns.toFixed(0)} -> ${after.ns.toFixed(0)} ns, ${before.bytes.toFixed(0)} -> ${after.bytes.toFixed(0)} B (ratio CPU ${(after.ns / before.ns).toFixed(2)}, bytes ${(after.bytes / before.bytes).toFixed(2)})`;

if (!process.execArgv.some((a) => a.startsWith("--min-semi-space-size"))) console.log("(run with --min-semi-space-size=256 --max-semi-space-size=256 for the bytes: a round's garbage must fit the young generation)");
for (let round = 1; round <= rounds; round++) {
  const idBefore = perCall(() => randomUUID());
  const idAfter = perCall(uuidV4);
  const eventBefore = perCall(() => buildEventBefore("payment"));
  const eventAfter = perCall(() => buildEvent("payment", TipSucceededSchema, init));
  const v7Before = perCall(() => timeOrderedBefore());
  const v7After = perCall(() => timeOrderedUuid());
  const tipStock = perCall(() => buildEventStockMeta("payment", TipSucceededSchema, init));
  const tipMeta = perCall(() => buildEvent("payment", TipSucceededSchema, init, "req-3f1b2c4d5e6f"));
  const deliveryStock = perCall(() => buildEventStockMeta("notification", DeliveryUpdatedSchema, delivery));
  const deliveryMeta = perCall(() => buildEvent("notification", DeliveryUpdatedSchema, delivery, "req-3f1b2c4d5e6f"));
  console.log(`round ${round}: ${line("id: randomUUID -> uuidV4", idBefore, idAfter)}; ${line("entry id (v7)", v7Before, v7After)}; ${line("event built", eventBefore, eventAfter)}`);
  console.log(`  meta through protobuf-es -> by hand: ${line("TipSucceeded", tipStock, tipMeta)}; ${line("DeliveryUpdated", deliveryStock, deliveryMeta)}`);
}
