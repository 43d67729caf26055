// One audit log: the other services' admin actions arrive from their outboxes
// (ttip.<service>.admin_action) and are searched with auth's own records.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { NotificationAdminActionTakenSchema, PaymentAdminActionTakenSchema, WalletAdminActionTakenSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { buildEvent } from "@ttip/runtime";
import { eventually, startTestService, type TestService } from "@ttip/runtime/testing";
import { createAuth } from "../src/index.js";

describe("the audit log of every admin action", () => {
  let t: TestService;
  before(async () => {
    t = await startTestService(createAuth({ otpSender: { send: async () => undefined } as never }));
  });
  after(() => t?.close());

  test("payment's, wallet's and notification's admin actions are appended once each, searchable by actor, action, target and dates, with auth's own", async () => {
    const finance = randomUUID();
    const admin = randomUUID();
    const worker = randomUUID();
    const hold = buildEvent("payment", PaymentAdminActionTakenSchema, {
      action: { action: AuditAction.PAYOUTS_HELD, actorUserId: finance, ipAddress: "10.8.0.9", target: `worker:${worker}`, userId: worker, detail: "checking a dispute" },
    });
    // An action this version does not know is skipped, and does not stop the ones behind it.
    const unknown = buildEvent("payment", PaymentAdminActionTakenSchema, { action: { action: 999 as AuditAction, actorUserId: finance, target: "x:1" } });
    const fees = buildEvent("wallet", WalletAdminActionTakenSchema, {
      action: { action: AuditAction.FEE_SCHEDULE_CREATED, actorUserId: admin, target: "fee_schedule:KES:v2", detail: "v2 from 2027-01-01" },
    });
    const template = buildEvent("notification", NotificationAdminActionTakenSchema, {
      action: { action: AuditAction.TEMPLATE_VERSION_ACTIVATED, actorUserId: admin, target: "template:tip_received/sw/sms", detail: "version 3" },
    });
    for (const m of [hold, unknown, hold, fees, template]) await t.ctx.bus.publish(m);

    const support = t.client(AuthAdminService, { subject: randomUUID(), roles: ["support"] });
    const all = await eventually("the three actions in the log", async () => {
      const { events } = await support.listAuditEvents({ page: { pageSize: 50 } });
      return events.length >= 3 && events;
    });
    assert.equal(all.length, 3, "the repeated hold once, the unknown action skipped");
    const held = all.find((e) => e.auditEventId === hold.id)!;
    assert.equal(held.action, AuditAction.PAYOUTS_HELD);
    assert.equal(held.service, "payment");
    assert.equal(held.target, `worker:${worker}`);
    assert.equal(held.userId, worker);
    assert.equal(held.actorUserId, finance);
    assert.equal(held.ipAddress, "10.8.0.9");
    assert.equal(held.detail, "checking a dispute");

    const byActor = await support.listAuditEvents({ actorUserId: admin });
    assert.deepEqual(byActor.events.map((e) => e.service).sort(), ["notification", "wallet"]);
    const byTarget = await support.listAuditEvents({ target: "template:tip_received/sw/sms" });
    assert.deepEqual(byTarget.events.map((e) => e.action), [AuditAction.TEMPLATE_VERSION_ACTIVATED]);
    const byAction = await support.listAuditEvents({ actions: [AuditAction.FEE_SCHEDULE_CREATED, AuditAction.PAYOUTS_HELD] });
    assert.equal(byAction.events.length, 2);
    const future = await support.listAuditEvents({ from: timestampFromDate(new Date(Date.now() + 60_000)) });
    assert.equal(future.events.length, 0, "the date range bounds it");
    const past = await support.listAuditEvents({ to: timestampFromDate(new Date(Date.now() - 60_000)) });
    assert.equal(past.events.length, 0);
    const paged = await support.listAuditEvents({ page: { pageSize: 2 } });
    assert.equal(paged.events.length, 2);
    const rest = await support.listAuditEvents({ page: { pageSize: 2, pageToken: paged.page!.nextPageToken } });
    assert.equal(rest.events.length, 1);

    const { rows } = await t.db.pool.query("SELECT count(*)::int AS n FROM auth.inbox WHERE consumer = 'auth-admin-audit'");
    assert.equal(rows[0].n, 4, "every distinct event went through the inbox (the duplicate was dropped by the bus or the inbox)");
    await assert.rejects(support.listAuditEvents({ actorUserId: "not-a-uuid" }), /actor_user_id/);
  });
});
