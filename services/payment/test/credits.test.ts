// M-Pesa credits posted to the real wallet and recorded on their tips in groups
// (credits.ts): every tip credited exactly once, whatever arrives together, and
// whatever fails for one tip fails it alone, for reconciliation to finish.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { fromBinary } from "@bufbuild/protobuf";
import { TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { AccountKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { asConnectError, type Pool, type ServiceContext } from "@ttip/runtime";
import { ChangeFeed } from "../src/changes.js";
import { AUTO_PAYOUT_CHECK_AFTER_CREDIT_MS } from "../src/config.js";
import { postCredit, recordCredits } from "../src/credits.js";
import { DarajaClient } from "../src/daraja/client.js";
import { autoPayout, startPayout } from "../src/payouts.js";
import { clearAutoPayoutDue, releasePayouts } from "../src/stores/payout-settings.js";
import { type EntryToPost, Ledger } from "../src/ledger.js";
import { REVIEW_CLAIM_GRACE_MS } from "../src/review-resumer.js";
import { loadTip, type Deps, type TipRow } from "../src/tips.js";
import { eventually, KES, phone, startHarness, type Harness } from "./setup.js";
import { testPhone } from "@ttip/runtime/testing";

/** The real ledger, counting its PostEntries calls; entries under a key in `misdirected` name an account wallet does not have (wallet refuses them). */
class WatchedLedger extends Ledger {
  readonly calls: number[] = [];
  readonly misdirected = new Set<string>();

  override async tipCreditEntry(input: Parameters<Ledger["tipCreditEntry"]>[0]): Promise<EntryToPost> {
    const entry = await super.tipCreditEntry(input);
    if (this.misdirected.has(input.key)) entry.postings![1].accountId = randomUUID();
    return entry;
  }

  override async postEntries(entries: EntryToPost[]) {
    this.calls.push(entries.length);
    return super.postEntries(entries);
  }
}

describe("credits posted and recorded in groups, against the real wallet", () => {
  let h: Harness;
  before(async () => void (h = await startHarness()));
  after(() => h.close());

  const row = async (tipId: string): Promise<TipRow> => (await loadTip(h.t.db.pool, tipId))!;
  const succeededEvents = async (tipId: string) => {
    const { rows } = await h.t.db.pool.query<{ payload: Buffer }>(
      "SELECT payload FROM payment.outbox WHERE subject = 'ttip.payment.tip_succeeded' AND position($1::bytea in payload) > 0", [Buffer.from(tipId)]);
    return rows.map((r) => fromBinary(TipSucceededSchema, r.payload));
  };
  const receiptsOwed = async (tipId: string) => Number((await h.t.db.pool.query("SELECT count(*) AS n FROM payment.receipts WHERE tip_id = $1", [tipId])).rows[0].n);
  const reconcile = async () => {
    h.clock.advance(h.config.stkDeadlineMs + 20);
    return h.t.client(PaymentInternalService).reconcilePending({ limit: 100 });
  };

  /**
   * Tips to `workerId` a success decided (receipt and wallet entry fixed), not yet posted: what the callback's
   * decision leaves for postCredit; with `held`, held for review with the money to go to suspense.
   */
  async function decidedTips(workerId: string, amounts: bigint[], held = false): Promise<TipRow[]> {
    const tips: TipRow[] = [];
    for (const minor of amounts) {
      const tipId = randomUUID();
      const receipt = `R${randomUUID().replaceAll("-", "").slice(0, 9).toUpperCase()}`;
      await h.t.db.pool.query(
        `INSERT INTO payment.tips (tip_id, idempotency_key, request_fingerprint, worker_id, currency, amount_minor, fee_minor, charged_minor, worker_receives_minor,
           phone, phone_masked, status, callback_token, deadline_at, next_check_at, mpesa_receipt, credit_key, credit_kind, completed_at)
         VALUES ($1::uuid, $1::text, 'fp', $2, 'KES', $3::bigint, $3::bigint / 20, $3::bigint, $3::bigint - $3::bigint / 20, $4, '2547***678', $6, $1::text, now(), now(), $5, $5, $7, now())`,
        [tipId, workerId, minor, testPhone(), receipt, held ? "held_for_review" : "succeeded", held ? "suspense" : "worker"],
      );
      tips.push(await row(tipId));
    }
    return tips;
  }

  /**
   * The payment module's dependencies for postCredit, with `ledger` and a pool
   * that counts the recording statements; while `failRecording`, fails them and
   * every transaction after (the process died); with `loseAnswer`, loses the
   * recording statement's answer, after its commit or before it was sent.
   */
  function depsWith(ledger: Ledger) {
    const counts = { recordings: 0, failRecording: false, loseAnswer: undefined as "after-commit" | "before-sent" | undefined };
    const pool = h.t.ctx.pool;
    const watched = new Proxy(pool, {
      get(target, prop) {
        // As if the process died after wallet answered: nothing more reaches PostgreSQL.
        if (prop === "connect" && counts.failRecording) return () => Promise.reject(new Error("connection lost"));
        if (prop === "query") {
          return (...args: Parameters<Pool["query"]>) => {
            const text = typeof args[0] === "string" ? args[0] : "";
            if (text.startsWith("WITH entries AS")) {
              counts.recordings++;
              // As if the process died after wallet answered and before the recording reached PostgreSQL.
              if (counts.failRecording) return Promise.reject(new Error("connection lost"));
              if (counts.loseAnswer === "before-sent") return Promise.reject(new Error("Connection terminated unexpectedly"));
              if (counts.loseAnswer === "after-commit") return committedThenLost(target, args);
            }
            return (target.query as (...a: unknown[]) => unknown)(...args);
          };
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const ctx = Object.create(h.t.ctx, { pool: { value: watched } }) as ServiceContext;
    const deps = { ctx, ledger, background: new Set(), config: () => h.config } as unknown as Deps;
    return { deps, counts };
  }

  /** `pool`, calling `seen` once a statement whose text includes `marker` has answered on one of its connections (a transaction's). */
  function noticing(pool: Pool, marker: string, seen: () => void): Pool {
    let noticed = false;
    return new Proxy(pool, {
      get(target, prop) {
        if (prop !== "connect") {
          const value = Reflect.get(target, prop, target);
          return typeof value === "function" ? value.bind(target) : value;
        }
        return async () => {
          const client = await target.connect();
          const { query, release } = client;
          client.query = ((...args: unknown[]) => {
            const answer = (query as (...a: unknown[]) => Promise<unknown>).apply(client, args);
            if (typeof args[0] === "string" && args[0].includes(marker)) void answer.then(() => !noticed && ((noticed = true), seen()), () => undefined);
            return answer;
          }) as typeof client.query;
          // Given back as it came.
          client.release = ((err?: Error | boolean) => {
            client.query = query;
            client.release = release;
            return release.call(client, err);
          }) as typeof client.release;
          return client;
        };
      },
    });
  }

  /** Runs the statement (one statement commits as it answers), then closes its connection unread and fails as pg does when one breaks. */
  async function committedThenLost(pool: Pool, args: Parameters<Pool["query"]>): Promise<never> {
    const client = await pool.connect();
    try {
      await (client.query as (...a: unknown[]) => Promise<unknown>)(...args);
    } finally {
      client.release(true);
    }
    throw new Error("Connection terminated unexpectedly");
  }

  test("many concurrent callbacks (repeated ones too) and reconciliation passes credit every tip exactly once", async () => {
    const workers = [randomUUID(), randomUUID(), randomUUID()];
    // Every fourth customer's callback is delivered three times by the simulator.
    const pay = h.t.client(PaymentService);
    const created = await Promise.all(Array.from({ length: 30 }, (_, i) =>
      pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: workers[i % 3] }, amount: KES(50 + i), payment: { case: "mpesaPhone", value: phone(i % 4 === 0 ? "0002" : undefined) } })));
    // A worker with automatic payouts: a credit recorded in a group starts one.
    const autoWorker = randomUUID();
    await h.t.db.pool.query("INSERT INTO payment.payout_settings (worker_id, auto_payout, auto_payout_minimum_minor, payout_phone) VALUES ($1, true, 100, $2)", [autoWorker, `254${phone().slice(1)}`]);
    const toAutoWorker = await Promise.all([60, 70, 80].map((shillings) =>
      pay.createTip({ idempotencyKey: randomUUID(), recipient: { case: "workerId", value: autoWorker }, amount: KES(shillings), payment: { case: "mpesaPhone", value: phone() } })));
    const tipIds = [...created, ...toAutoWorker].map((c) => c.tip!.tipId);
    // Passes racing the callbacks: a tip may be decided by its query instead, never twice.
    await Promise.all([reconcile(), reconcile()]);
    const rows = await eventually(async () => {
      const all = await Promise.all(tipIds.map(row));
      return all.every((r) => r.credit_entry_id) && all;
    }, "every tip's credit recorded", 15_000);
    await h.sim.idle();
    await reconcile();
    for (const worker of workers) {
      const mine = rows.filter((r) => r.worker_id === worker);
      assert.equal(await h.balance(worker), mine.reduce((s, r) => s + r.worker_receives_minor, 0n), "the worker's balance is the sum of their shares");
      assert.equal(await h.walletEntries(worker), mine.length, "one wallet entry per tip");
    }
    for (const r of rows) {
      const events = await succeededEvents(r.tip_id);
      assert.equal(events.length, 1, `one tip_succeeded for ${r.tip_id}`);
      assert.equal(events[0].net?.amountMinor, r.worker_receives_minor);
      assert.equal(await receiptsOwed(r.tip_id), 1);
    }
    assert.ok(await h.trialBalanced());
    await eventually(async () => (await h.t.db.pool.query("SELECT 1 FROM payment.payouts WHERE worker_id = $1 AND automatic", [autoWorker])).rowCount, "an automatic payout started");
    assert.equal((await h.t.db.pool.query("SELECT 1 FROM payment.payouts WHERE worker_id = ANY($1::uuid[])", [workers])).rowCount, 0, "none for workers without automatic payouts");
  });

  test("credits asked for together go in one wallet call and one recording; an entry wallet refuses leaves only its tip uncredited, for reconciliation", async () => {
    const worker = randomUUID();
    const credited = await decidedTips(worker, [10_000n, 20_000n, 30_000n, 40_000n, 50_000n, 60_000n, 70_000n]);
    // One held for review among them: its money goes to suspense, with no event and no receipt.
    const [held] = await decidedTips(worker, [90_000n], true);
    const ledger = new WatchedLedger(h.t.ctx);
    const refused = credited[5];
    ledger.misdirected.add(refused.credit_key!);
    const { deps, counts } = depsWith(ledger);
    const tipsCounted = async (status: string) =>
      (await h.t.ctx.metrics.registry.getSingleMetric("ttip_payment_tips_total")!.get()).values.find((v) => v.labels.status === status && v.labels.method === "mpesa")?.value ?? 0;
    const [succeededBefore, heldBefore] = [await tipsCounted("succeeded"), await tipsCounted("held")];
    const outcomes = await Promise.all([...credited, held].map((t) => postCredit(deps, t.tip_id, t)));
    assert.deepEqual(outcomes, [...credited.map((t) => t !== refused), true]);
    // Asked for in the same turn of the event loop: one call and one recording for all eight.
    assert.deepEqual(ledger.calls, [8]);
    assert.equal(counts.recordings, 1);
    assert.deepEqual([await tipsCounted("succeeded") - succeededBefore, await tipsCounted("held") - heldBefore], [6, 1]);
    assert.ok((await row(held.tip_id)).credit_entry_id, "the held tip's suspense entry is recorded");
    assert.deepEqual(await succeededEvents(held.tip_id), []);
    assert.equal(await receiptsOwed(held.tip_id), 0);
    const tips = credited;
    const good = tips.filter((t) => t !== refused);
    assert.equal(await h.balance(worker), good.reduce((s, t) => s + t.worker_receives_minor, 0n));
    assert.equal(await h.walletEntries(worker), good.length);
    assert.equal((await row(refused.tip_id)).credit_entry_id, null, "the refused tip stays decided and uncredited");
    assert.deepEqual(await succeededEvents(refused.tip_id), []);
    assert.equal(await receiptsOwed(refused.tip_id), 0);
    for (const t of good) {
      assert.ok((await row(t.tip_id)).credit_entry_id);
      assert.equal((await succeededEvents(t.tip_id)).length, 1);
      assert.equal(await receiptsOwed(t.tip_id), 1);
    }
    // Reconciliation (the module's own ledger) posts it, and a pass after changes nothing.
    await reconcile();
    await reconcile();
    assert.ok((await row(refused.tip_id)).credit_entry_id);
    assert.equal(await h.balance(worker), tips.reduce((s, t) => s + t.worker_receives_minor, 0n));
    assert.equal(await h.walletEntries(worker), tips.length);
    assert.equal((await succeededEvents(refused.tip_id)).length, 1);
    for (const t of good) assert.equal((await succeededEvents(t.tip_id)).length, 1, "the others are not announced again");
  });

  test("a credit the wallet refuses every time waits behind the others: reconciliation passes of one tip each credit the others", async () => {
    const worker = randomUUID();
    const [refused, ...others] = await decidedTips(worker, [10_000n, 20_000n, 30_000n]);
    // The wallet holds another entry under the first tip's key: it refuses that credit on every try.
    await h.t.db.pool.query("INSERT INTO wallet.entries (entry_id, idempotency_key, request_hash, cause_kind, cause_ref) VALUES ($1, $2, 'another entry', 'test', 'test')",
      [randomUUID(), refused.credit_key]);
    // As many passes of one tip as tips wait (earlier tests' too): each is tried once, or credited.
    const waiting = Number((await h.t.db.pool.query("SELECT count(*) AS n FROM payment.uncredited WHERE method = 'mpesa'")).rows[0].n);
    for (let pass = 0; pass < waiting; pass++) await h.t.client(PaymentInternalService).reconcilePending({ limit: 1 });
    // Before, the oldest waiting credit came first on every pass: the refused one took each pass's place.
    for (const t of others) assert.ok((await row(t.tip_id)).credit_entry_id, `tip ${t.tip_id} credited`);
    assert.equal(await h.balance(worker), others.reduce((s, t) => s + t.worker_receives_minor, 0n));
    assert.equal((await row(refused.tip_id)).credit_entry_id, null, "the refused one still waits, for support");
    assert.equal((await h.t.db.pool.query("SELECT attempts FROM payment.uncredited WHERE tip_id = $1", [refused.tip_id])).rows[0].attempts, 1);
    // /metrics says how long it has waited (the credit latency histogram sees only credits that land): ten minutes.
    await h.t.db.pool.query("UPDATE payment.uncredited SET completed_at = now() - interval '10 minutes' WHERE tip_id = $1", [refused.tip_id]);
    const { values } = await h.t.ctx.metrics.registry.getSingleMetric("ttip_payment_oldest_uncredited_seconds")!.get();
    const mpesa = values.find((v) => v.labels.method === "mpesa")!.value;
    assert.ok(mpesa >= 600 && mpesa < 86_400, `oldest uncredited: ${mpesa} s`);
  });

  test("a tip whose row changed since the decision (rated, its receipt learned late) is recorded from the row as it is, once", async () => {
    const worker = randomUUID();
    const [unchanged, rated, late] = await decidedTips(worker, [10_000n, 20_000n, 30_000n]);
    // The copies in hand predate a rating and a receipt learned after the decision (its credit key stays what the decision fixed).
    await h.t.db.pool.query("UPDATE payment.tips SET rating = 5, message = 'asante', rated_at = now() WHERE tip_id = $1", [rated.tip_id]);
    await h.t.db.pool.query("UPDATE payment.tips SET mpesa_receipt = NULL WHERE tip_id = $1", [late.tip_id]);
    const lateCopy = await row(late.tip_id);
    await h.t.db.pool.query("UPDATE payment.tips SET mpesa_receipt = 'LATE' || substr(md5(tip_id::text), 1, 6) WHERE tip_id = $1", [late.tip_id]);
    const ledger = new WatchedLedger(h.t.ctx);
    const { deps } = depsWith(ledger);
    // The rated tip asked for twice at once, as a callback and a reconciliation pass would: one entry, one event.
    const outcomes = await Promise.all([postCredit(deps, unchanged.tip_id, unchanged), postCredit(deps, rated.tip_id, rated), postCredit(deps, rated.tip_id, rated), postCredit(deps, late.tip_id, lateCopy)]);
    assert.deepEqual(outcomes, [true, true, false, true]);
    const [u, r, l] = await Promise.all([succeededEvents(unchanged.tip_id), succeededEvents(rated.tip_id), succeededEvents(late.tip_id)]);
    assert.deepEqual([u.length, r.length, l.length], [1, 1, 1]);
    assert.deepEqual([r[0].rating, r[0].message], [5, "asante"], "the event says what the row says now");
    assert.equal(l[0].mpesaReceipt, (await row(late.tip_id)).mpesa_receipt);
    assert.match(l[0].mpesaReceipt, /^LATE/);
    assert.equal(u[0].mpesaReceipt, unchanged.mpesa_receipt);
    for (const t of [unchanged, rated, late]) {
      assert.ok((await row(t.tip_id)).credit_entry_id);
      assert.equal(await receiptsOwed(t.tip_id), 1);
    }
    assert.equal(await h.walletEntries(worker), 3);
    assert.equal(await h.balance(worker), unchanged.worker_receives_minor + rated.worker_receives_minor + late.worker_receives_minor);
  });

  test("a crash between wallet's answer and the recording is repaired by reconciliation without a second entry", async () => {
    const worker = randomUUID();
    const tips = await decidedTips(worker, [10_000n, 25_000n, 40_000n]);
    const { deps, counts } = depsWith(new WatchedLedger(h.t.ctx));
    counts.failRecording = true;
    const outcomes = await Promise.allSettled(tips.map((t) => postCredit(deps, t.tip_id, t)));
    assert.deepEqual(outcomes.map((o) => o.status), ["rejected", "rejected", "rejected"], "the recording failed: the callers hear it");
    const share = tips.reduce((s, t) => s + t.worker_receives_minor, 0n);
    assert.equal(await h.balance(worker), share, "wallet posted the entries");
    for (const t of tips) assert.equal((await row(t.tip_id)).credit_entry_id, null);
    await reconcile();
    assert.equal(await h.walletEntries(worker), tips.length, "no second entry");
    assert.equal(await h.balance(worker), share);
    for (const t of tips) {
      assert.ok((await row(t.tip_id)).credit_entry_id);
      assert.equal((await succeededEvents(t.tip_id)).length, 1);
      assert.equal(await receiptsOwed(t.tip_id), 1);
    }
  });

  for (const lost of ["after-commit", "before-sent"] as const) {
    test(`a group's recording whose answer is lost (${lost}) answers each tip as its row says: recorded once, its receipt and automatic payout started at once, once`, async () => {
      const worker = randomUUID();
      const [plain, rated, other, held] = [...(await decidedTips(worker, [10_000n, 20_000n, 30_000n])), ...(await decidedTips(worker, [40_000n], true))];
      // Rated since its copy was read: the group's statement skips it, whether or not it committed.
      await h.t.db.pool.query("UPDATE payment.tips SET rating = 4, rated_at = now() WHERE tip_id = $1", [rated.tip_id]);
      const { deps, counts } = depsWith(new WatchedLedger(h.t.ctx));
      const started: string[] = [];
      deps.afterCredit = async (tip) => void started.push(tip.tip_id);
      counts.loseAnswer = lost;
      // `other` asked for twice at once (a callback and a reconciliation pass): one of the two records it.
      const outcomes = await Promise.all([plain, rated, other, other, held].map((t) => postCredit(deps, t.tip_id, t)));
      counts.loseAnswer = undefined;
      await Promise.all([...(deps.background as Set<Promise<unknown>>)]);
      assert.deepEqual(outcomes, [true, true, true, false, true]);
      assert.equal(counts.recordings, 1, "one group statement; its tips then recovered from their rows");
      assert.deepEqual([...started].sort(), [plain, rated, other].map((t) => t.tip_id).sort(), "each worker tip's automatic payout started once, now");
      for (const t of [plain, rated, other]) {
        assert.ok((await row(t.tip_id)).credit_entry_id);
        assert.equal((await succeededEvents(t.tip_id)).length, 1, "announced once");
        // Sent at once (no notification runs here, so it failed once and stays owed: tried once, by this caller).
        const { rows } = await h.t.db.pool.query<{ attempts: number; sent_at: Date | null }>("SELECT attempts, sent_at FROM payment.receipts WHERE tip_id = $1", [t.tip_id]);
        assert.deepEqual(rows.map((r) => r.attempts), [1], "its receipt tried once");
      }
      assert.equal((await succeededEvents(rated.tip_id))[0].rating, 4, "the skipped tip announced as its row is now");
      assert.ok((await row(held.tip_id)).credit_entry_id, "the held tip's suspense entry recorded");
      assert.deepEqual(await succeededEvents(held.tip_id), []);
      assert.equal(await receiptsOwed(held.tip_id), 0);
      await reconcile();
      assert.equal(await h.walletEntries(worker), 3, "one entry per worker tip");
      for (const t of [plain, rated, other]) assert.equal((await succeededEvents(t.tip_id)).length, 1, "reconciliation found nothing to do");
    });
  }

  test("a wallet stuck on EnsureAccount: past the configured deadline the call is ABORTED and the credit left to reconciliation, which credits it once", async () => {
    const worker = randomUUID();
    const [tip] = await decidedTips(worker, [10_000n]);
    // A new ledger knows no account yet: crediting asks wallet for three.
    const ledger = new WatchedLedger(h.t.ctx, () => 200);
    const { deps } = depsWith(ledger);
    const holder = await h.t.db.pool.connect();
    let outcome: boolean;
    let refusal: unknown;
    try {
      await holder.query("BEGIN");
      // Wallet's statements on its accounts wait for this lock before their own lock timeout is set: wallet answers nothing.
      await holder.query("LOCK TABLE wallet.accounts IN ACCESS EXCLUSIVE MODE");
      outcome = await postCredit(deps, tip.tip_id, tip);
      refusal = await ledger.account(AccountKind.WORKER_WALLET, randomUUID()).then(() => undefined, (err: unknown) => err);
    } finally {
      await holder.query("ROLLBACK");
      holder.release();
    }
    assert.equal(outcome, false, "not credited here");
    assert.equal(ledger.calls.length, 0, "nothing posted");
    assert.equal(Code[asConnectError(refusal).code], Code[Code.Aborted], "to try again");
    assert.match(asConnectError(refusal).rawMessage, /EnsureAccount within 200 ms/);
    assert.equal((await row(tip.tip_id)).credit_entry_id, null, "left decided and uncredited");
    await reconcile();
    assert.ok((await row(tip.tip_id)).credit_entry_id, "reconciliation credits it");
    assert.equal(await h.walletEntries(worker), 1);
    assert.equal(await h.balance(worker), tip.worker_receives_minor);
    assert.equal((await succeededEvents(tip.tip_id)).length, 1);
  });

  test("tips to a worker with automatic payouts credited together start one payout, not one that pays and others that fail", async () => {
    const worker = randomUUID();
    await h.t.db.pool.query("INSERT INTO payment.payout_settings (worker_id, auto_payout, auto_payout_minimum_minor, payout_phone) VALUES ($1, true, 100, $2)", [worker, `254${phone().slice(1)}`]);
    const tips = await decidedTips(worker, [10_000n, 20_000n, 30_000n]);
    const { deps } = depsWith(new WatchedLedger(h.t.ctx));
    const full = Object.assign(deps, { daraja: () => new DarajaClient(h.config.daraja!, h.clock), changes: new ChangeFeed(h.t.ctx.bus) });
    full.afterCredit = (tip, settings, checkAt) => autoPayout(full, tip, settings, checkAt);
    // Asked for in one turn: one wallet call, one recording; each tip's automatic payout starts as its credit is answered.
    const outcomes = await Promise.all(tips.map((t) => postCredit(full, t.tip_id, t)));
    assert.deepEqual(outcomes, [true, true, true]);
    await Promise.all([...(full.background as Set<Promise<unknown>>)]);
    const { rows } = await h.t.db.pool.query<{ status: string; amount_minor: bigint }>("SELECT status, amount_minor FROM payment.payouts WHERE worker_id = $1", [worker]);
    const share = tips.reduce((s, t) => s + t.worker_receives_minor, 0n);
    // One payout of the balance; (its result may be in already: pending or succeeded). A second only if the first had ended
    // before a later tip's turn came (then it pays what was left), never one failing to hold what the first holds.
    assert.ok(rows.length >= 1, "a payout started");
    assert.deepEqual(rows.filter((r) => r.status === "failed"), [], "no payout failed");
    assert.ok(rows.reduce((s, r) => s + r.amount_minor, 0n) <= share, "paid out at most the tips' share");
  });

  test("a process that died between a credit's commit and its automatic payout's start: reconciliation starts the payout a check time later, once", async () => {
    const [plainWorker, ratedWorker] = [randomUUID(), randomUUID()];
    for (const w of [plainWorker, ratedWorker]) {
      await h.t.db.pool.query("INSERT INTO payment.payout_settings (worker_id, auto_payout, auto_payout_minimum_minor, payout_phone) VALUES ($1, true, 100, $2)", [w, `254${phone().slice(1)}`]);
    }
    const [plain] = await decidedTips(plainWorker, [10_000n]);
    // Rated after its copy was read: recorded by its own statement (recordFromRowNow), not the group's.
    const [rated] = await decidedTips(ratedWorker, [20_000n]);
    await h.t.db.pool.query("UPDATE payment.tips SET rating = 5, rated_at = now() WHERE tip_id = $1", [rated.tip_id]);
    const { deps } = depsWith(new WatchedLedger(h.t.ctx));
    const started: string[] = [];
    // The process dies once the recording committed: no automatic payout starts here.
    deps.afterCredit = async (tip) => void started.push(tip.tip_id);
    const creditedAt = h.clock.now();
    assert.deepEqual(await Promise.all([postCredit(deps, plain.tip_id, plain), postCredit(deps, rated.tip_id, rated)]), [true, true]);
    const payouts = async (worker: string) =>
      (await h.t.db.pool.query<{ amount_minor: bigint; automatic: boolean }>("SELECT amount_minor, automatic FROM payment.payouts WHERE worker_id = $1", [worker])).rows;
    for (const [worker, tip] of [[plainWorker, plain], [ratedWorker, rated]] as const) {
      const { rows: [s] } = await h.t.db.pool.query<{ auto_payout_due_at: Date | null }>("SELECT auto_payout_due_at FROM payment.payout_settings WHERE worker_id = $1", [worker]);
      const checkAt = s.auto_payout_due_at?.getTime() ?? 0;
      assert.ok(checkAt >= creditedAt + AUTO_PAYOUT_CHECK_AFTER_CREDIT_MS && checkAt <= h.clock.now() + AUTO_PAYOUT_CHECK_AFTER_CREDIT_MS, `${tip === plain ? "the group's" : "its own"} recording marks the check`);
    }
    await h.t.client(PaymentInternalService).reconcilePending({ limit: 100 });
    assert.deepEqual([...(await payouts(plainWorker)), ...(await payouts(ratedWorker))], [], "not before the check time: a live process starts its own");
    h.clock.advance(AUTO_PAYOUT_CHECK_AFTER_CREDIT_MS + 1_000);
    await h.t.client(PaymentInternalService).reconcilePending({ limit: 100 });
    await h.t.client(PaymentInternalService).reconcilePending({ limit: 100 });
    assert.deepEqual(await payouts(plainWorker), [{ amount_minor: (plain.worker_receives_minor / 100n) * 100n, automatic: true }], "one payout of the balance");
    assert.deepEqual(await payouts(ratedWorker), [{ amount_minor: (rated.worker_receives_minor / 100n) * 100n, automatic: true }]);

    // A live process starts the payout and settles the mark: nothing left for reconciliation to look at.
    const liveWorker = randomUUID();
    await h.t.db.pool.query("INSERT INTO payment.payout_settings (worker_id, auto_payout, auto_payout_minimum_minor, payout_phone) VALUES ($1, true, 100, $2)", [liveWorker, `254${phone().slice(1)}`]);
    const [live] = await decidedTips(liveWorker, [30_000n]);
    const full = Object.assign(depsWith(new WatchedLedger(h.t.ctx)).deps, { daraja: () => new DarajaClient(h.config.daraja!, h.clock), changes: new ChangeFeed(h.t.ctx.bus) });
    full.afterCredit = (tip, settings, checkAt) => autoPayout(full, tip, settings, checkAt);
    assert.equal(await postCredit(full, live.tip_id, live), true);
    await Promise.all([...(full.background as Set<Promise<unknown>>)]);
    assert.equal((await payouts(liveWorker)).length, 1, "started at once");
    assert.equal((await h.t.db.pool.query("SELECT auto_payout_due_at FROM payment.payout_settings WHERE worker_id = $1", [liveWorker])).rows[0].auto_payout_due_at, null);
  });

  test("the latest credit's look wins: an earlier credit's start, which read the balance before it, cannot clear it; a release of payouts looks at once", async () => {
    const worker = randomUUID();
    await h.t.db.pool.query("INSERT INTO payment.payout_settings (worker_id, auto_payout, auto_payout_minimum_minor, payout_phone) VALUES ($1, true, 100, $2)", [worker, `254${phone().slice(1)}`]);
    const [first, second] = await decidedTips(worker, [10_000n, 20_000n]);
    const { deps } = depsWith(new WatchedLedger(h.t.ctx));
    const marks: (Date | undefined)[] = [];
    // No start here: each credit's mark is kept to settle by hand, as its start would.
    deps.afterCredit = async (_tip, _settings, checkAt) => void marks.push(checkAt);
    const due = async () => (await h.t.db.pool.query<{ auto_payout_due_at: Date | null }>("SELECT auto_payout_due_at FROM payment.payout_settings WHERE worker_id = $1", [worker])).rows[0].auto_payout_due_at;
    assert.equal(await postCredit(deps, first.tip_id, first), true);
    await Promise.all([...(deps.background as Set<Promise<unknown>>)]);
    h.clock.advance(1_000);
    assert.equal(await postCredit(deps, second.tip_id, second), true);
    await Promise.all([...(deps.background as Set<Promise<unknown>>)]);
    assert.equal(marks.length, 2);
    assert.equal((await due())?.getTime(), marks[1]!.getTime(), "the second credit's look");
    // The first credit's start ends (it paid what it read, without the second tip): before, it cleared the only mark.
    await clearAutoPayoutDue(h.t.db.pool, worker, marks[0]!);
    assert.equal((await due())?.getTime(), marks[1]!.getTime(), "still looked at");
    // Payouts held, then released: due now, not at the credit's look, which that credit's start would settle.
    await h.t.db.pool.query("UPDATE payment.payout_settings SET payouts_on_hold = true WHERE worker_id = $1", [worker]);
    const releasedAt = new Date(h.clock.now());
    assert.equal(await releasePayouts(h.t.db.pool, worker, releasedAt), "released");
    await clearAutoPayoutDue(h.t.db.pool, worker, marks[1]!);
    assert.equal((await due())?.getTime(), releasedAt.getTime());
    // A mark due already (a pass that found the payouts held is about to clear it): the release's is a time of its own.
    const overdue = new Date(h.clock.now() - 60_000);
    await h.t.db.pool.query("UPDATE payment.payout_settings SET payouts_on_hold = true, auto_payout_due_at = $2 WHERE worker_id = $1", [worker, overdue]);
    h.clock.advance(1_000);
    const again = new Date(h.clock.now());
    assert.equal(await releasePayouts(h.t.db.pool, worker, again), "released");
    await clearAutoPayoutDue(h.t.db.pool, worker, overdue);
    assert.equal((await due())?.getTime(), again.getTime(), "the release's look is not cleared with the pass's");
  });

  /**
   * Two replicas starting automatic payouts of one worker's balance: A reads the balance and waits
   * (until `go`) while B credits two tips and starts its payout. Returns the tips and what A started.
   */
  async function replicasRacingOnePayout() {
    const worker = randomUUID();
    const payoutPhone = `254${phone().slice(1)}`;
    await h.t.db.pool.query("INSERT INTO payment.payout_settings (worker_id, auto_payout, auto_payout_minimum_minor, payout_phone) VALUES ($1, true, 100, $2)", [worker, payoutPhone]);
    const [first, second] = await decidedTips(worker, [10_000n, 20_000n]);
    let readByA: () => void = () => undefined;
    const aRead = new Promise<void>((r) => (readByA = r));
    let go: () => void = () => undefined;
    const gate = new Promise<void>((r) => (go = r));
    const ledgerA = new (class extends WatchedLedger {
      override async available(workerId: string, currency?: string): Promise<bigint> {
        const balance = await super.available(workerId, currency);
        readByA();
        await gate;
        return balance;
      }
    })(h.t.ctx);
    const replica = (ledger: Ledger) => {
      const { deps } = depsWith(ledger);
      return Object.assign(deps, { daraja: () => new DarajaClient(h.config.daraja!, h.clock), changes: new ChangeFeed(h.t.ctx.bus) });
    };
    const [a, b] = [replica(ledgerA), replica(new WatchedLedger(h.t.ctx))];
    for (const t of [first, second]) assert.equal(await postCredit(b, t.tip_id, t), true);
    const readWithCredit = { auto_payout: true, auto_payout_minimum_minor: 100n, payout_phone: payoutPhone, payouts_on_hold: false, payout_phone_changed_at: null };
    const startedByA = autoPayout(a, first, readWithCredit);
    await aRead;
    await autoPayout(b, second, readWithCredit);
    const payouts = async () =>
      (await h.t.db.pool.query<{ status: string; amount_minor: bigint }>("SELECT status, amount_minor FROM payment.payouts WHERE worker_id = $1", [worker])).rows;
    return { worker, share: first.worker_receives_minor + second.worker_receives_minor, payouts, finishA: () => (go(), startedByA) };
  }

  test("two replicas paying out one worker's balance at once: one payout, not one that pays and one that fails to hold it", async () => {
    const race = await replicasRacingOnePayout();
    await race.finishA();
    const rows = await race.payouts();
    assert.equal(rows.length, 1, "one payout of the balance");
    assert.notEqual(rows[0].status, "failed");
    assert.equal(rows[0].amount_minor, race.share);
  });

  test("a replica whose balance read is older than another's payout that ended meanwhile starts none: the balance may have moved since", async () => {
    const race = await replicasRacingOnePayout();
    // B's payout ends (paid) before A goes on: no payout is open, but the balance A read is gone.
    await h.t.db.pool.query("UPDATE payment.payouts SET status = 'succeeded', completed_at = now() WHERE worker_id = $1", [race.worker]);
    await race.finishA();
    const rows = await race.payouts();
    assert.equal(rows.length, 1, "one payout of the balance");
    assert.equal(rows[0].status, "succeeded", "B's; none by A that failed to hold what B paid");
    assert.equal(rows[0].amount_minor, race.share);
  });

  /** Replica A's automatic payout of a worker's balance, stopped between its insert and its hold in the wallet until `go`; replica B beside it. */
  async function autoPayoutAtItsHold() {
    const worker = randomUUID();
    const payoutPhone = `254${phone().slice(1)}`;
    await h.t.db.pool.query("INSERT INTO payment.payout_settings (worker_id, auto_payout, auto_payout_minimum_minor, payout_phone) VALUES ($1, true, 100, $2)", [worker, payoutPhone]);
    const [tip] = await decidedTips(worker, [10_000n]);
    let holding: () => void = () => undefined;
    const atHold = new Promise<void>((r) => (holding = r));
    let go: () => void = () => undefined;
    const gate = new Promise<void>((r) => (go = r));
    const ledgerA = new (class extends WatchedLedger {
      override async placeHold(workerId: string, amountMinor: bigint, payoutId: string) {
        holding();
        await gate;
        return super.placeHold(workerId, amountMinor, payoutId);
      }
    })(h.t.ctx);
    const replica = (ledger: Ledger) => Object.assign(depsWith(ledger).deps, { daraja: () => new DarajaClient(h.config.daraja!, h.clock), changes: new ChangeFeed(h.t.ctx.bus) });
    const [a, b] = [replica(ledgerA), replica(new WatchedLedger(h.t.ctx))];
    assert.equal(await postCredit(b, tip.tip_id, tip), true);
    const startedByA = autoPayout(a, tip, { auto_payout: true, auto_payout_minimum_minor: 100n, payout_phone: payoutPhone, payouts_on_hold: false, payout_phone_changed_at: null });
    await atHold;
    const payouts = async () =>
      (await h.t.db.pool.query<{ automatic: boolean; status: string; result_code: string | null }>("SELECT automatic, status, result_code FROM payment.payouts WHERE worker_id = $1 ORDER BY automatic DESC", [worker])).rows;
    // The worker withdraws part of the balance meanwhile.
    const withdrawal = { workerId: worker, amountMinor: 5_000n, phone: payoutPhone, idempotencyKey: randomUUID(), automatic: false };
    return { b, go, withdrawal, payouts, finishA: () => (go(), startedByA) };
  }

  test("two replicas: a withdrawal asked while an automatic payout of the same balance is placing its hold waits for that hold, then gets the wallet's exact answer; neither fails to hold money that was there", async () => {
    const race = await autoPayoutAtItsHold();
    // A goes on once B has looked for an automatic payout placing its hold.
    let looked = false;
    race.b.ctx = Object.create(h.t.ctx, { pool: { value: noticing(h.t.ctx.pool, "automatic AND status IN ('pending', 'resolving') AND hold_state = 'none'", () => ((looked = true), race.go())) } });
    const asked = await startPayout(race.b, race.withdrawal).then((p) => p, (err: unknown) => asConnectError(err));
    await race.finishA();
    const [auto, manual] = await race.payouts();
    assert.equal(looked, true, "the withdrawal found the automatic payout placing its hold");
    assert.deepEqual([auto.automatic, auto.status !== "failed"], [true, true], "the automatic payout held the balance");
    // The whole balance is held by then: the wallet's refusal is exact (nothing left to hold), not a race lost.
    assert.ok(asked instanceof ConnectError && asked.code === Code.FailedPrecondition, String(asked));
    assert.deepEqual([manual.automatic, manual.status, manual.result_code], [false, "failed", "insufficient_balance"]);
  });

  test("two replicas: a withdrawal whose wait for an automatic payout's hold runs out (the wallet not answering it) is refused ABORTED naming that payout, nothing stored", async () => {
    const race = await autoPayoutAtItsHold();
    const asked = await startPayout(race.b, race.withdrawal).then((p) => p, (err: unknown) => asConnectError(err));
    assert.ok(asked instanceof ConnectError && asked.code === Code.Aborted, String(asked));
    assert.match(asked.rawMessage, /^an automatic payout of KES 95 \(payout [0-9a-f-]{36}\) is still placing its hold on your balance .*ask again shortly$/);
    await race.finishA();
    assert.deepEqual((await race.payouts()).map((p) => [p.automatic, p.status !== "failed"]), [[true, true]], "the withdrawal stored nothing; the automatic payout held the balance");
  });

  test("a withdrawal tapped twice whose first hold the wallet refuses after the second held it: not failed, its hold kept, paid once", async () => {
    const worker = randomUUID();
    const payoutPhone = `254${phone().slice(1)}`;
    const [tip] = await decidedTips(worker, [10_000n]);
    let holding: () => void = () => undefined;
    const atHold = new Promise<void>((r) => (holding = r));
    let refuse: () => void = () => undefined;
    const refusal = new Promise<void>((r) => (refuse = r));
    // The first tap's hold: asked while the balance was short (a credit came just after), refused once the second held it.
    const ledgerA = new (class extends WatchedLedger {
      override async placeHold(): Promise<{ holdId: string; accountId: string }> {
        holding();
        await refusal;
        throw new ConnectError("insufficient funds: available KES 0.00", Code.FailedPrecondition);
      }
    })(h.t.ctx);
    const replica = (ledger: Ledger) => Object.assign(depsWith(ledger).deps, { daraja: () => new DarajaClient(h.config.daraja!, h.clock), changes: new ChangeFeed(h.t.ctx.bus) });
    const [a, b] = [replica(ledgerA), replica(new WatchedLedger(h.t.ctx))];
    assert.equal(await postCredit(b, tip.tip_id, tip), true);
    const withdrawal = { workerId: worker, amountMinor: 5_000n, phone: payoutPhone, idempotencyKey: randomUUID(), automatic: false };
    const first = startPayout(a, withdrawal).then((p) => p, (err: unknown) => asConnectError(err));
    await atHold;
    const second = await startPayout(b, withdrawal);
    const row = async () => (await h.t.db.pool.query<{ status: string; hold_state: string; b2c_state: string }>(
      "SELECT status, hold_state, b2c_state FROM payment.payouts WHERE payout_id = $1", [second.payoutId])).rows[0];
    const sent = await row();
    assert.deepEqual([sent.b2c_state, sent.status !== "failed"], ["sent", true], "the second tap held it and sent it");
    refuse();
    const answered = await first;
    // Before, the first tap's refusal failed the payout M-Pesa was paying and released its hold: paid twice.
    assert.ok(!(answered instanceof ConnectError), `the first tap answered the payout, not the refusal: ${String(answered)}`);
    assert.equal(answered.payoutId, second.payoutId);
    await eventually(async () => (await row()).status === "succeeded" && (await row()).hold_state === "settled", "paid once, its hold settled");
    assert.equal(await h.balance(worker), tip.worker_receives_minor - 5_000n, "the withdrawal taken from the wallet once");
  });

  test("an automatic payout that waited for the one before reads the worker's settings again: a hold set meanwhile stops it", async () => {
    const worker = randomUUID();
    const payoutPhone = `254${phone().slice(1)}`;
    await h.t.db.pool.query("INSERT INTO payment.payout_settings (worker_id, auto_payout, auto_payout_minimum_minor, payout_phone) VALUES ($1, true, 100, $2)", [worker, payoutPhone]);
    const [first, second] = await decidedTips(worker, [10_000n, 20_000n]);
    let reading: () => void = () => undefined;
    const read = new Promise<void>((r) => (reading = r));
    let open: () => void = () => undefined;
    const gate = new Promise<void>((r) => (open = r));
    // The first payout's start is held while it reads the balance, and then finds nothing to pay: no payout left open.
    const ledger = new (class extends WatchedLedger {
      private reads = 0;
      override async available(workerId: string, currency?: string): Promise<bigint> {
        if (this.reads++ > 0) return super.available(workerId, currency);
        reading();
        await gate;
        return 0n;
      }
    })(h.t.ctx);
    const { deps } = depsWith(ledger);
    for (const t of [first, second]) assert.equal(await postCredit(deps, t.tip_id, t), true);
    const full = Object.assign(deps, { daraja: () => new DarajaClient(h.config.daraja!, h.clock), changes: new ChangeFeed(h.t.ctx.bus) });
    // The settings as each credit's statement read them.
    const readWithCredit = { auto_payout: true, auto_payout_minimum_minor: 100n, payout_phone: payoutPhone, payouts_on_hold: false, payout_phone_changed_at: null };
    const started = [autoPayout(full, first, readWithCredit), autoPayout(full, second, readWithCredit)];
    await read;
    await h.t.db.pool.query("UPDATE payment.payout_settings SET payouts_on_hold = true, hold_reason = 'under review' WHERE worker_id = $1", [worker]);
    open();
    await Promise.all(started);
    const { rows } = await h.t.db.pool.query("SELECT status, amount_minor FROM payment.payouts WHERE worker_id = $1", [worker]);
    assert.deepEqual(rows, [], "the hold set while the second waited is respected");
  });

  test("recordings of any size share one plan, each tip answered with its own row", async () => {
    const client = await h.t.db.pool.connect();
    // Counted on this connection from here on: an earlier test may have run the statement on it already.
    const plans = async () => {
      const { rows } = await client.query<{ custom_plans: bigint; generic_plans: bigint }>(
        "SELECT custom_plans, generic_plans FROM pg_prepared_statements WHERE statement LIKE 'WITH entries AS%'");
      assert.ok(rows.length <= 1, "one prepared statement for every size");
      return { custom: rows[0]?.custom_plans ?? 0n, generic: rows[0]?.generic_plans ?? 0n };
    };
    try {
      const before = await plans();
      for (let size = 1; size <= 12; size++) {
        const tips = await decidedTips(randomUUID(), Array.from({ length: size }, (_, i) => BigInt(1_000 * (i + 1))));
        const recorded = await recordCredits(client, tips.map((tip, i) => ({ tip, entryId: `entry-${size}-${i}`, traceparent: null, autoPayoutCheckAt: new Date() })));
        assert.deepEqual(tips.map((t) => recorded.get(t.tip_id)?.row.credit_entry_id), tips.map((_, i) => `entry-${size}-${i}`));
      }
      const after = await plans();
      assert.equal(after.custom + after.generic - before.custom - before.generic, 12n, "all twelve sizes ran the one prepared statement");
      // PostgreSQL plans a statement's first five calls for their values, then keeps the generic plan when it is no worse.
      assert.ok(after.custom <= 5n && after.generic - before.generic >= 7n, `generic plan kept (custom ${after.custom}, generic ${after.generic})`);
    } finally {
      client.release();
    }
  });

  test("a tip whose own recording fails after the group's statement committed fails alone: the others are answered and their automatic payouts start", async () => {
    const worker = randomUUID();
    const [plain, rated] = await decidedTips(worker, [10_000n, 20_000n]);
    // Rated since its copy was read: the group's statement skips it and it is recorded by a statement of its own, which PostgreSQL refuses here.
    await h.t.db.pool.query("UPDATE payment.tips SET rating = 4, rated_at = now() WHERE tip_id = $1", [rated.tip_id]);
    const trigger = `credits_test_refuse_${rated.tip_id.replaceAll("-", "")}`;
    await h.t.db.pool.query(`CREATE FUNCTION payment.${trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'recording refused'; END $$`);
    await h.t.db.pool.query(`CREATE TRIGGER ${trigger} BEFORE UPDATE OF credit_entry_id ON payment.tips FOR EACH ROW
      WHEN (NEW.tip_id = '${rated.tip_id}'::uuid AND OLD.credit_entry_id IS NULL) EXECUTE FUNCTION payment.${trigger}()`);
    const { deps } = depsWith(new WatchedLedger(h.t.ctx));
    const started: string[] = [];
    deps.afterCredit = async (tip) => void started.push(tip.tip_id);
    let outcomes: PromiseSettledResult<boolean>[];
    try {
      outcomes = await Promise.allSettled([postCredit(deps, plain.tip_id, plain), postCredit(deps, rated.tip_id, rated)]);
    } finally {
      await h.t.db.pool.query(`DROP TRIGGER ${trigger} ON payment.tips`);
      await h.t.db.pool.query(`DROP FUNCTION payment.${trigger}()`);
    }
    assert.deepEqual(outcomes.map((o) => o.status), ["fulfilled", "rejected"], "only the tip whose recording failed hears the failure");
    assert.equal((outcomes[0] as PromiseFulfilledResult<boolean>).value, true);
    assert.ok((await row(plain.tip_id)).credit_entry_id, "recorded by the group's statement");
    assert.deepEqual(started, [plain.tip_id], "its automatic payout starts: nothing later would start it, the tip being credited");
    assert.equal((await row(rated.tip_id)).credit_entry_id, null);
    await reconcile();
    assert.ok((await row(rated.tip_id)).credit_entry_id, "reconciliation records the other");
    assert.equal(await h.walletEntries(worker), 2);
    for (const t of [plain, rated]) assert.equal((await succeededEvents(t.tip_id)).length, 1);
  });
  test("a group's recording that PostgreSQL refuses for one tip is recorded tip by tip: only that tip fails, the others are recorded and answered", async () => {
    const worker = randomUUID();
    const [first, refused, last] = await decidedTips(worker, [10_000n, 20_000n, 30_000n]);
    // Any statement recording this tip's entry fails, so the group's, which records all three at once, fails as a whole.
    const trigger = `credits_test_refuse_${refused.tip_id.replaceAll("-", "")}`;
    await h.t.db.pool.query(`CREATE FUNCTION payment.${trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'recording refused'; END $$`);
    await h.t.db.pool.query(`CREATE TRIGGER ${trigger} BEFORE UPDATE OF credit_entry_id ON payment.tips FOR EACH ROW
      WHEN (NEW.tip_id = '${refused.tip_id}'::uuid AND OLD.credit_entry_id IS NULL) EXECUTE FUNCTION payment.${trigger}()`);
    const { deps, counts } = depsWith(new WatchedLedger(h.t.ctx));
    const started: string[] = [];
    deps.afterCredit = async (tip) => void started.push(tip.tip_id);
    let outcomes: PromiseSettledResult<boolean>[];
    try {
      outcomes = await Promise.allSettled([first, refused, last].map((t) => postCredit(deps, t.tip_id, t)));
    } finally {
      await h.t.db.pool.query(`DROP TRIGGER ${trigger} ON payment.tips`);
      await h.t.db.pool.query(`DROP FUNCTION payment.${trigger}()`);
    }
    assert.deepEqual(outcomes.map((o) => (o.status === "fulfilled" ? o.value : "rejected")), [true, "rejected", true]);
    assert.equal(counts.recordings, 4, "the group's statement, then one per tip");
    assert.deepEqual([...started].sort(), [first.tip_id, last.tip_id].sort(), "the recorded tips' automatic payouts start");
    assert.ok((await row(first.tip_id)).credit_entry_id && (await row(last.tip_id)).credit_entry_id);
    assert.equal((await row(refused.tip_id)).credit_entry_id, null, "left decided and uncredited, for reconciliation");
    await reconcile();
    assert.ok((await row(refused.tip_id)).credit_entry_id, "reconciliation records it");
    assert.equal(await h.walletEntries(worker), 3);
    for (const t of [first, refused, last]) assert.equal((await succeededEvents(t.tip_id)).length, 1);
  });

  test("a tip whose recording PostgreSQL refuses on every try fails the reconciliation pass only after the pass's other work: receipts tried, a review claim left by a stopped process finished", async () => {
    const worker = randomUUID();
    const [refused] = await decidedTips(worker, [10_000n]);
    const [held] = await decidedTips(worker, [20_000n], true);
    await reconcile(); // both credited: the held one to suspense
    await h.t.db.pool.query("UPDATE payment.tips SET credit_entry_id = NULL, credited_at = NULL WHERE tip_id = $1", [refused.tip_id]);
    // An approval claimed, then its process stopped: the resumer finishes it once its grace has passed.
    await h.t.db.pool.query(`UPDATE payment.tips SET approval_receipt = mpesa_receipt, review_claimed_at = now() - interval '1 day', review_claimed_by = 'admin', review_note = 'fine'
      WHERE tip_id = $1`, [held.tip_id]);
    // A receipt owed, the first a pass takes (no notification service here: each try fails and counts).
    const [paid] = await decidedTips(randomUUID(), [5_000n]);
    await h.t.db.pool.query("UPDATE payment.tips SET credit_entry_id = 'posted' WHERE tip_id = $1", [paid.tip_id]);
    await h.t.db.pool.query("INSERT INTO payment.receipts (tip_id, created_at) VALUES ($1, '2000-01-01')", [paid.tip_id]);
    const owed = async () => (await h.t.db.pool.query("SELECT attempts FROM payment.receipts WHERE tip_id = $1", [paid.tip_id])).rows[0]?.attempts as number;
    const trigger = `credits_test_refuse_${refused.tip_id.replaceAll("-", "")}`;
    await h.t.db.pool.query(`CREATE FUNCTION payment.${trigger}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'recording refused'; END $$`);
    await h.t.db.pool.query(`CREATE TRIGGER ${trigger} BEFORE UPDATE OF credit_entry_id ON payment.tips FOR EACH ROW
      WHEN (NEW.tip_id = '${refused.tip_id}'::uuid AND OLD.credit_entry_id IS NULL) EXECUTE FUNCTION payment.${trigger}()`);
    try {
      h.clock.advance(REVIEW_CLAIM_GRACE_MS + 1);
      await assert.rejects(h.t.client(PaymentInternalService).reconcilePending({ limit: 100 }), (e: ConnectError) => e.code === Code.Internal, "the pass fails");
    } finally {
      await h.t.db.pool.query(`DROP TRIGGER ${trigger} ON payment.tips`);
      await h.t.db.pool.query(`DROP FUNCTION payment.${trigger}()`);
    }
    // Before, the pass stopped at the refused recording: no receipt tried, no review finished, every pass alike.
    assert.equal(await owed(), 1, "the receipts were tried");
    assert.equal((await row(held.tip_id)).status, "succeeded", "the stopped approval finished");
    assert.equal(await h.balance(worker), refused.worker_receives_minor + held.worker_receives_minor, "each paid once");
    await reconcile();
    assert.ok((await row(refused.tip_id)).credit_entry_id, "recorded once PostgreSQL takes it");
    assert.equal(await h.balance(worker), refused.worker_receives_minor + held.worker_receives_minor);
  });

  test("two replicas crediting the same tips at once, in groups of other sizes and orders: each tip one entry, one recording, one event", async () => {
    const workers = [randomUUID(), randomUUID()];
    const tips = [...(await decidedTips(workers[0], Array.from({ length: 12 }, (_, i) => BigInt(1_000 * (i + 1))))),
      ...(await decidedTips(workers[1], Array.from({ length: 12 }, (_, i) => BigInt(500 * (i + 1)))))];
    // Each replica has its own groups (and its own ledger): they meet only in wallet and in PostgreSQL.
    const [a, b] = [depsWith(new WatchedLedger(h.t.ctx)), depsWith(new WatchedLedger(h.t.ctx))];
    const started: string[] = [];
    for (const r of [a, b]) r.deps.afterCredit = async (tip) => void started.push(tip.tip_id);
    const reversed = [...tips].reverse();
    const outcomes = await Promise.all([
      ...tips.map((t) => postCredit(a.deps, t.tip_id, t)),
      ...reversed.map((t) => postCredit(b.deps, t.tip_id, t)),
      // A second wave on one replica: the tips again, in groups of their own.
      ...tips.filter((_, i) => i % 3 === 0).map((t) => new Promise<boolean>((resolve, reject) => setImmediate(() => postCredit(a.deps, t.tip_id, t).then(resolve, reject)))),
    ]);
    assert.equal(outcomes.filter(Boolean).length, tips.length, "each tip recorded by one caller only");
    assert.deepEqual([...started].sort(), tips.map((t) => t.tip_id).sort(), "one automatic payout started per tip");
    for (const [k, worker] of workers.entries()) {
      const mine = tips.filter((t) => t.worker_id === worker);
      assert.equal(await h.walletEntries(worker), mine.length, `one wallet entry per tip of worker ${k}`);
      assert.equal(await h.balance(worker), mine.reduce((s, t) => s + t.worker_receives_minor, 0n));
    }
    for (const t of tips) {
      assert.ok((await row(t.tip_id)).credit_entry_id);
      assert.equal((await succeededEvents(t.tip_id)).length, 1, `one tip_succeeded for ${t.tip_id}`);
      assert.equal(await receiptsOwed(t.tip_id), 1);
    }
  });
});
