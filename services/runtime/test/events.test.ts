import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import * as events from "@ttip/proto/ttip/events/v1/events_pb.js";
import { EventMetaSchema, TipSucceededSchema, WalletCreditedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { metaIsFirst, withMetaFirst, type MetaFields } from "../src/event-meta.js";
import { buildEvent, subjectOf } from "../src/events.js";

/** Every message of ttip.events.v1 that carries EventMeta. */
const withMeta = (Object.values(events) as unknown[]).filter(
  (v): v is DescMessage => (v as DescMessage).kind === "message" && (v as DescMessage).fields.some((f) => f.name === "meta"),
);
/** The events; a view (named …View: the fields one consumer reads of an event, under its numbers) is never published. */
const eventSchemas = withMeta.filter((s) => !s.name.endsWith("View"));
const viewSchemas = withMeta.filter((s) => s.name.endsWith("View"));

describe("event subjects declared in the contracts", () => {
  test("every event declares one subject, ttip.<service>.<event>, and no two share one", () => {
    assert.ok(eventSchemas.length >= 20, `found ${eventSchemas.length} events`);
    const subjects = eventSchemas.map(subjectOf);
    assert.equal(new Set(subjects).size, subjects.length);
    for (const s of subjects) assert.match(s, /^ttip\.(auth|payment|qr|wallet|notification|analytics|venue)\.[a-z_]+$/);
    assert.equal(subjectOf(TipSucceededSchema), "ttip.payment.tip_succeeded");
    assert.equal(subjectOf(WalletCreditedSchema), "ttip.wallet.credited");
  });

  test("a message without a subject cannot be emitted; a service emits only its own events", () => {
    assert.throws(() => subjectOf(EventMetaSchema), /declares no event subject/);
    assert.ok(viewSchemas.length >= 1, "TipSucceededCodeView");
    for (const view of viewSchemas) assert.throws(() => subjectOf(view), /declares no event subject/, view.typeName);
    assert.throws(() => buildEvent("wallet", TipSucceededSchema, { tipId: "t1" }), /wallet cannot emit ttip\.events\.v1\.TipSucceeded/);
    // Read in place, not split: a producer named as the start of the subject's, or the whole rest of it, is not its producer.
    for (const other of ["pay", "paymentx", "payment.tip_succeeded", "", "ttip"]) assert.throws(() => buildEvent(other, TipSucceededSchema, { tipId: "t1" }), /cannot emit/, other);
    const init = { tipId: "t1" };
    buildEvent("payment", TipSucceededSchema, init);
    assert.deepEqual(init, { tipId: "t1" }, "the caller's init is left as it was");
    const built = buildEvent("payment", TipSucceededSchema, { tipId: "t1" }, "corr-1");
    assert.equal(built.subject, "ttip.payment.tip_succeeded");
    const decoded = fromBinary(TipSucceededSchema, built.data);
    assert.equal(decoded.tipId, "t1");
    assert.equal(decoded.meta?.id, built.id);
    assert.equal(decoded.meta?.producer, "payment");
    assert.equal(decoded.meta?.correlationId, "corr-1");
    const fresh = Date.now();
    assert.ok(Math.abs(Number(decoded.meta!.occurredAt!.seconds) * 1000 - fresh) < 60_000, "now, unless told");
    const at = new Date("2026-03-01T09:30:00Z");
    const replayed = fromBinary(TipSucceededSchema, buildEvent("payment", TipSucceededSchema, { tipId: "t2" }, "", at).data);
    assert.equal(Number(replayed.meta!.occurredAt!.seconds) * 1000, at.getTime(), "the time it is given");
  });

  test("an init that is already a message is left as it was: the event's meta is set on a copy, not on the caller's message", () => {
    const mine = create(TipSucceededSchema, { tipId: "t1" });
    const built = buildEvent("payment", TipSucceededSchema, mine as never, "corr-1");
    assert.equal(mine.meta, undefined, "the caller's message has no meta of the event's");
    assert.equal(mine.tipId, "t1");
    const decoded = fromBinary(TipSucceededSchema, built.data);
    assert.equal(decoded.tipId, "t1");
    assert.equal(decoded.meta?.id, built.id);
    assert.equal(decoded.meta?.correlationId, "corr-1");
  });

  test("event ids are in time order (UUID version 7), so inboxes add them at an index's end", () => {
    const before = Date.now();
    const ids = Array.from({ length: 50 }, () => buildEvent("payment", TipSucceededSchema, { tipId: "t1" }).id);
    assert.equal(new Set(ids).size, ids.length);
    for (const id of ids) {
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      const ms = parseInt(id.replace(/-/g, "").slice(0, 12), 16);
      assert.ok(ms >= before && ms <= Date.now(), `${id} carries the time it was built`);
    }
  });
});

describe("an event's meta written by hand in front of the rest", () => {
  /** The stock encoding: the message made with its meta, through protobuf-es's writer. */
  const stock = (schema: DescMessage, init: Record<string, unknown>, m: MetaFields) =>
    toBinary(schema, create(schema, { ...init, meta: create(EventMetaSchema, { id: m.id, occurredAt: timestampFromMs(m.ms), producer: m.producer, correlationId: m.correlationId }) }));
  const rest = (schema: DescMessage, init: Record<string, unknown>) => toBinary(schema, create(schema, init));
  const texts = ["", "p", "payment", "req-0123456789abcdef", "x".repeat(127), "x".repeat(128), "x".repeat(20_000), "café ☕ 🎉", "lone \ud800 surrogate", "\u0000"];
  const times = [0, 1, 999, 1_000, 1_001, 59_999, Date.UTC(2026, 2, 1, 9, 30), Date.UTC(2026, 2, 1, 9, 30, 0, 7), 2 ** 42 + 123, 8.64e15];

  test("answers the stock encoding's bytes for every event type and meta", () => {
    const types = eventSchemas.filter(metaIsFirst);
    assert.equal(types.length, eventSchemas.length, "every event carries its meta as field 1");
    let i = 0;
    for (const schema of types)
      for (const init of [{}, { $unknown: [{ no: 999, wireType: 0, data: new Uint8Array([1]) }] }])
        for (let k = 0; k < 4; k++, i++) {
          const m = { id: texts[i % texts.length], ms: times[(i * 7) % times.length], producer: texts[(i * 3) % texts.length], correlationId: texts[(i * 5) % texts.length] };
          assert.deepEqual(withMetaFirst(m, rest(schema, init)), stock(schema, init, m), `${schema.typeName} ${JSON.stringify(m).slice(0, 200)}`);
        }
    for (const id of texts)
      for (const ms of times)
        for (const other of texts) {
          const m = { id, ms, producer: other, correlationId: id + other };
          const init = { tipId: other, workerId: id, amount: { currency: "KES", amountMinor: BigInt(ms % 1e9) }, method: 1 };
          assert.deepEqual(withMetaFirst(m, rest(TipSucceededSchema, init)), stock(TipSucceededSchema, init, m));
        }
  });

  test("a time it does not write (before 1970, not a time) is left to the stock encoding", () => {
    for (const ms of [-1, -1_000, NaN, Infinity, 0.5]) assert.equal(withMetaFirst({ id: "i", ms, producer: "p", correlationId: "" }, new Uint8Array()), undefined, String(ms));
    const before1970 = buildEvent("payment", TipSucceededSchema, { tipId: "t1" }, "c", new Date(-1_500));
    const decoded = fromBinary(TipSucceededSchema, before1970.data);
    assert.equal(decoded.meta?.occurredAt?.seconds, -2n);
    assert.equal(decoded.meta?.occurredAt?.nanos, 500_000_000);
    assert.deepEqual(toBinary(TipSucceededSchema, decoded), before1970.data);
  });

  test("buildEvent's bytes are the stock encoding of the event it reports, an init message's own meta replaced", () => {
    const given = create(TipSucceededSchema, { tipId: "t1", meta: { id: "not-this", producer: "nor-this" } });
    for (const [schema, init] of [...eventSchemas.map((s) => [s, {}] as const), [TipSucceededSchema, { tipId: "t1", fee: { currency: "KES", amountMinor: 30n } }] as const, [TipSucceededSchema, given] as const]) {
      const producer = subjectOf(schema).split(".")[1];
      const built = buildEvent(producer, schema, init as never, "corr-1", new Date(Date.UTC(2026, 0, 2, 3, 4, 5, 678)));
      const decoded = fromBinary(schema, built.data) as { meta?: { id: string; producer: string; correlationId: string; occurredAt?: { seconds: bigint; nanos: number } } };
      assert.deepEqual([decoded.meta?.id, decoded.meta?.producer, decoded.meta?.correlationId], [built.id, producer, "corr-1"]);
      assert.deepEqual([decoded.meta?.occurredAt?.seconds, decoded.meta?.occurredAt?.nanos], [BigInt(Date.UTC(2026, 0, 2, 3, 4, 5) / 1000), 678_000_000]);
      assert.deepEqual(built.data, toBinary(schema, decoded as never), schema.typeName);
    }
    assert.equal(given.meta?.id, "not-this", "the caller's message is left as it was");
  });
});
