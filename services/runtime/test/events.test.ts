import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, fromBinary, type DescMessage } from "@bufbuild/protobuf";
import * as events from "@ttip/proto/ttip/events/v1/events_pb.js";
import { EventMetaSchema, TipSucceededSchema, WalletCreditedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { buildEvent, subjectOf } from "../src/events.js";

/** Every message of ttip.events.v1 that carries EventMeta: the events. */
const eventSchemas = (Object.values(events) as unknown[]).filter(
  (v): v is DescMessage => (v as DescMessage).kind === "message" && (v as DescMessage).fields.some((f) => f.name === "meta"),
);

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
