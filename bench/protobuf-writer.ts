// What protobuf-es's toBinary costs with the runtime's pooled writer (services/runtime
// protobuf-writer.ts: buffers from node's Buffer pool, finish() a view) against the stock writer
// (the yardstick: protobuf-es's CommonJS build, a module instance of its own that the runtime
// does not patch), alternated in this process: an event as notification builds one per
// delivery (DeliveryUpdated with its EventMeta, ~200 bytes) and a WatchTip answer (a Tip); then
// notification's planned SMS delivery as its insert takes it: its event and its opted-out event
// encoded and their payload column made (byteaArray), now as they are, before each payload
// copied into a Buffer first (delivery.ts's Buffer.from, which byteaArray made needless).
// Prints CPU nanoseconds and heap bytes allocated per message (V8's sampling heap profiler,
// collected objects too; backing stores outside the heap are not in it) and their ratios.
//   node --max-semi-space-size=32 --import tsx bench/protobuf-writer.ts [rounds=5] [messages per round=100000]
import { createRequire } from "node:module";
import { Session } from "node:inspector/promises";
import { create, toBinary, type DescMessage, type Message } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { DeliveryUpdatedSchema, EventMetaSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { TipSchema, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { byteaArray } from "../services/runtime/src/db.js";
import { pooledProtobufWriter } from "../services/runtime/src/protobuf-writer.js";
import { sampledBytes, sampleHeap } from "./heap-sampling.js";

const rounds = Number(process.argv[2] ?? 5);
const perRound = Number(process.argv[3] ?? 100_000);
if (!pooledProtobufWriter) throw new Error("the pooled writer is not installed (protobuf-es's writer is not the one it knows)");
const stock = createRequire(import.meta.url)("@bufbuild/protobuf") as { toBinary: typeof toBinary };

const event = create(DeliveryUpdatedSchema, {
  meta: create(EventMetaSchema, { id: "0190a3c2-1111-7222-8333-944445555668", occurredAt: timestampNow(), producer: "notification", correlationId: "8d1e6f0c-5b7a-4c1e-9e0b-0a6f3d2c1b4a" }),
  deliveryId: "0190a3c2-1111-7222-8333-944445555666",
  userId: "0190a3c2-1111-7222-8333-944445555667",
  channel: "sms",
  status: "queued",
  templateKey: "tip_received",
});
const kes = (minor: bigint) => ({ currency: "KES", amountMinor: minor });
const tip = create(TipSchema, {
  tipId: "0190a3c2-1111-7222-8333-944445555669",
  workerId: "0190a3c2-1111-7222-8333-94444555566b",
  qrCodeId: "0190a3c2-1111-7222-8333-94444555566a",
  amount: kes(10_000n),
  fee: kes(250n),
  charged: kes(10_250n),
  status: TipStatus.SUCCEEDED,
  resultCode: "0",
  mpesaReceipt: "TJK3H7QX2M",
  customerPhoneMasked: "2547******89",
  createdAt: timestampNow(),
});
const messages: [string, DescMessage, Message][] = [
  ["DeliveryUpdated", DeliveryUpdatedSchema, event],
  ["Tip", TipSchema, tip],
];
for (const [name, schema, message] of messages) {
  console.log(`${name}: ${toBinary(schema, message).byteLength} B`);
  if (Buffer.compare(toBinary(schema, message), stock.toBinary(schema, message)) !== 0) throw new Error(`${name}: the writers' bytes differ`);
}
if (Buffer.compare(byteaArray([toBinary(DeliveryUpdatedSchema, event)])!, byteaArray([Buffer.from(stock.toBinary(DeliveryUpdatedSchema, event))])!) !== 0) throw new Error("the payload columns differ");

type Encode = (schema: DescMessage, message: Message) => Uint8Array;
const ways: Record<string, Encode> = { "pooled (now)": toBinary, "stock (before)": stock.toBinary };

function encode(way: Encode, schema: DescMessage, message: Message, count: number): void {
  for (let i = 0; i < count; i++) way(schema, message);
}

async function measure(way: Encode, schema: DescMessage, message: Message): Promise<{ ns: number; bytes: number }> {
  const start = process.cpuUsage();
  encode(way, schema, message, perRound);
  const used = process.cpuUsage(start);
  const heap = new Session();
  heap.connect();
  const sampled = 20_000;
  const profile = await sampleHeap(heap, 256, () => encode(way, schema, message, sampled));
  heap.disconnect();
  return { ns: ((used.user + used.system) * 1000) / perRound, bytes: sampledBytes(profile.head) / sampled };
}

/** An SMS delivery's two payloads (its event, its opted-out event) into the insert's bytea[] parameters. */
const deliveryNow: Encode = (schema, message) => byteaArray([toBinary(schema, message), toBinary(schema, message)])!;
const deliveryBefore: Encode = (schema, message) => byteaArray([Buffer.from(stock.toBinary(schema, message)), Buffer.from(stock.toBinary(schema, message))])!;
const cases: [string, DescMessage, Message, Record<string, Encode>][] = [
  ...messages.map(([name, schema, message]) => [name, schema, message, ways] as [string, DescMessage, Message, Record<string, Encode>]),
  ["an SMS delivery's payloads", DeliveryUpdatedSchema, event, { "now": deliveryNow, "before": deliveryBefore }],
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const [name, schema, message, ways] of cases) {
  for (const way of Object.values(ways)) encode(way, schema, message, 20_000); // warm
  const figures = new Map<string, { ns: number[]; bytes: number[] }>();
  for (let round = 1; round <= rounds; round++) {
    const line: string[] = [];
    for (const [wayName, way] of Object.entries(ways)) {
      const m = await measure(way, schema, message);
      const f = figures.get(wayName) ?? { ns: [], bytes: [] };
      f.ns.push(m.ns);
      f.bytes.push(m.bytes);
      figures.set(wayName, f);
      line.push(`${wayName} ${m.ns.toFixed(0)} ns ${m.bytes.toFixed(0)} B`);
    }
    console.log(`${name} round ${round}: ${line.join(", ")}`);
  }
  const [now, before] = [...figures.values()];
  const ratios = now.ns.map((ns, i) => (ns / before.ns[i]).toFixed(2));
  console.log(`${name} medians: now ${median(now.ns).toFixed(0)} ns ${median(now.bytes).toFixed(0)} B, before ${median(before.ns).toFixed(0)} ns ${median(before.bytes).toFixed(0)} B per message; CPU ratio by round ${ratios.join(" ")}, heap bytes ${(median(now.bytes) / Math.max(1, median(before.bytes))).toFixed(2)}`);
}
