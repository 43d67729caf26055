// CreateTip with a peer it asks stuck (the tables it reads locked: it answers
// nothing): the tip is refused UNAVAILABLE naming the call that did not answer,
// once that call's deadline passes, with nothing stored or pushed; the same
// key, once the peer answers again, creates the tip once.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createQrModule } from "@ttip/qr";
import { callerHeaders } from "@ttip/runtime";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { OwnerKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { KES, phone, startHarness, type Harness } from "./setup.js";

/** Far past every deadline the calls have (3 and 5 s): a call still waiting then would wait for as long as the lock is held. */
const UNANSWERED_MS = 30_000;

describe("CreateTip with wallet or qr stuck: refused in bounded time, nothing stored", () => {
  let h: Harness;
  let pay: Client<typeof PaymentService>;
  let qr: Client<typeof QrService>;

  before(async () => {
    h = await startHarness({}, [createQrModule({ env: { QR_ALLOW_DEV_SIGNING_KEY: "true" } })]);
    pay = h.t.client(PaymentService);
    qr = createClient(QrService, h.t.ctx.peers("qr"));
  });
  after(async () => {
    await h.close();
  });

  /** `during`'s outcome (its answer or its error) with `tables` locked by another transaction: the service reading them answers nothing meanwhile. */
  async function whileLocked<T>(tables: string, during: () => Promise<T>): Promise<T | unknown> {
    const holder = await h.t.db.pool.connect();
    try {
      await holder.query("BEGIN");
      // No lock timeout on the services' statements: they wait for as long as it is held.
      await holder.query(`LOCK TABLE ${tables} IN ACCESS EXCLUSIVE MODE`);
      // Bounded, so that a call that never answers fails the test and lets the lock go (a guard, not a timing).
      let timer: NodeJS.Timeout | undefined;
      const unanswered = new Promise((resolve) => (timer = setTimeout(() => resolve(new Error(`no answer within ${UNANSWERED_MS} ms with ${tables} locked`)), UNANSWERED_MS)));
      return await Promise.race([during().then((answer) => answer, (err: unknown) => err), unanswered]).finally(() => clearTimeout(timer));
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
  }
  const tipsUnder = async (key: string) => Number((await h.t.db.pool.query("SELECT count(*) FROM payment.tips WHERE idempotency_key = $1", [key])).rows[0].count);
  const refusedUnavailable = (outcome: unknown, said: RegExp) => {
    assert.ok(outcome instanceof ConnectError, "refused, not answered");
    assert.equal(Code[outcome.code], Code[Code.Unavailable]);
    assert.match(outcome.rawMessage, said);
  };

  // First in the file: payment's copy of the fee schedules is not loaded yet, so this tip loads it.
  test("wallet stuck on the fee schedules a tip's quote needs: refused UNAVAILABLE naming LoadFeeSchedules, nothing stored or pushed; the same key goes through once wallet answers", async () => {
    assert.equal(await h.copiedFeeScheduleVersion("KES"), 0, "no copy loaded yet");
    const request = { idempotencyKey: randomUUID(), recipient: { case: "workerId" as const, value: randomUUID() }, amount: KES(100), payment: { case: "mpesaPhone" as const, value: phone() } };
    const pushed = h.sim.transactions().length;
    const outcome = await whileLocked("wallet.fee_schedules", () => pay.createTip(request));
    refusedUnavailable(outcome, /wallet did not answer LoadFeeSchedules within 5000 ms; retry/);
    assert.equal(await tipsUnder(request.idempotencyKey), 0, "no tip stored");
    assert.equal(h.sim.transactions().length, pushed, "nothing pushed");
    const { tip } = await pay.createTip(request);
    assert.equal((await pay.createTip(request)).tip!.tipId, tip!.tipId, "a repeat answers the same tip");
    assert.equal(await tipsUnder(request.idempotencyKey), 1);
  });

  test("qr stuck on a scanned code's lookup: refused UNAVAILABLE naming ResolveQrCode and qr_code, nothing stored or pushed", async () => {
    const worker = randomUUID();
    const as = { headers: callerHeaders(worker, "worker") };
    await qr.putProfile({ ownerKind: OwnerKind.WORKER, ownerId: worker, displayName: "Achieng" }, as);
    const { qrCode } = await qr.createQrCode({ ownerKind: OwnerKind.WORKER, ownerId: worker, idempotencyKey: randomUUID() }, as);
    const request = { idempotencyKey: randomUUID(), recipient: { case: "qrCode" as const, value: qrCode!.shortCode }, amount: KES(100), payment: { case: "mpesaPhone" as const, value: phone() } };
    const pushed = h.sim.transactions().length;
    // A code not resolved yet is read from qr's table (its cache has nothing of it).
    const outcome = await whileLocked("qr.qr_codes", () => pay.createTip(request));
    refusedUnavailable(outcome, /^qr_code: cannot be checked now \(qr did not answer ResolveQrCode within 3000 ms; retry\)/);
    assert.equal(await tipsUnder(request.idempotencyKey), 0, "no tip stored");
    assert.equal(h.sim.transactions().length, pushed, "nothing pushed");
    assert.equal((await pay.createTip(request)).tip!.workerId, worker, "the same key goes through once qr answers");
  });
});
