import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { IdempotencyKeyConflictSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import { FeeScheduleCreatedSchema, WalletAdminActionTakenSchema, WalletCreditedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import {
  AccountKind,
  EntryCauseSchema,
  FxConversionSchema,
  HoldStatus,
  LimitKind,
  OwnerKind,
  PaymentRail,
  SettlementMode,
  TransactionKind,
  UserTier,
  WithdrawalLimitSchema,
} from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { StatementFormat, WalletAdminService, WalletInternalService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { decodeEvent, IdempotencyConflictError, MPESA_LIMITS, nairobiMonthOf, onOutboxCommitted, type Queryable, withTransaction } from "@ttip/runtime";
import { eventually, kesMinor, type TestService } from "@ttip/runtime/testing";
import { placeHold, releaseHold, settleHold } from "../src/holds.js";
import { causeOf, ensureAccount, postEntry, type EntryInput } from "../src/ledger.js";
import type { PoolClient } from "pg";
import { startLedger } from "./ledger-fixture.js";

const tipCause = () => create(EntryCauseSchema, { cause: { case: "tipAttemptId", value: randomUUID() } });
const codeOf = (p: Promise<unknown>) => p.then(() => "ok", (e: ConnectError) => Code[e.code]);
/** The error a call must fail with. */
const failure = (p: Promise<unknown>) =>
  p.then(
    () => assert.fail("expected the call to fail"),
    (e: unknown) => ConnectError.from(e),
  );

describe("wallet ledger over gRPC, on real PostgreSQL and JetStream", () => {
  let t: TestService;
  let internal: Client<typeof WalletInternalService>;
  let admin: Client<typeof WalletAdminService>;
  let clearing: string;
  let fees: string;

  before(async () => {
    ({ t, internal, admin, clearing, fees } = await startLedger());
  });
  after(() => t.close());

  async function newWorker() {
    const workerId = randomUUID();
    const account = (await internal.ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: workerId, currency: "KES" })).account!;
    return { workerId, accountId: account.accountId, client: t.client(WalletService, { subject: workerId, roles: ["worker"] }) };
  }

  /** A confirmed M-Pesa tip: clearing -> worker (net) and platform fees. */
  function tip(workerAccount: string, gross: bigint, fee: bigint, key = `mpesa:${randomUUID()}`) {
    return internal.postEntry({
      idempotencyKey: key,
      cause: tipCause(),
      postings: [
        { accountId: clearing, amount: kesMinor(-gross) },
        { accountId: workerAccount, amount: kesMinor(gross - fee), memo: "tip" },
        ...(fee ? [{ accountId: fees, amount: kesMinor(fee), memo: "platform fee" }] : []),
      ],
      description: "Tip by M-Pesa",
    });
  }

  async function balanceOf(accountId: string) {
    return (await admin.getAccount({ accountId })).balance!;
  }

  /** A venue's pool with a KES 20 tip in it, and the start of the period that holds the tip. */
  async function poolWithTip() {
    const venueId = randomUUID();
    const pool = (await internal.ensureAccount({ kind: AccountKind.VENUE_POOL, ownerKind: OwnerKind.VENUE, ownerId: venueId, currency: "KES" })).account!.accountId;
    const start = new Date(Date.now() - 60_000);
    await tip(pool, 2_000n, 0n);
    return { venueId, pool, start };
  }

  /** A period's end past every tip so far: a posting is timed to the microsecond, a period's end to the millisecond. */
  async function periodEnd() {
    await sleep(5);
    return new Date();
  }

  /** Splits the pool's KES 20 between two workers, KES 10 each. */
  function splitPool(venueId: string, start: Date, end: Date, workerIds: string[]) {
    return internal.postPoolDistribution({
      venueId,
      currency: "KES",
      start: timestampFromDate(start),
      end: timestampFromDate(end),
      distributionId: randomUUID(),
      idempotencyKey: `split:${randomUUID()}`,
      shares: workerIds.map((workerId) => ({ workerId, amount: kesMinor(1_000n), memo: "share" })),
    });
  }

  /** The calls that failed, as "Code: message". */
  const rejections = (results: PromiseSettledResult<unknown>[]) =>
    results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => ConnectError.from(r.reason)).map((e) => `${Code[e.code]}: ${e.rawMessage}`);

  test("ensureAccount is idempotent on its natural key and checks ownership", async () => {
    const w = await newWorker();
    const again = await internal.ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: w.workerId, currency: "KES" });
    assert.equal(again.account!.accountId, w.accountId);
    assert.equal(await codeOf(internal.ensureAccount({ kind: AccountKind.PLATFORM_FEES, ownerKind: OwnerKind.WORKER, ownerId: w.workerId, currency: "KES" })), "InvalidArgument");
    assert.equal(await codeOf(internal.ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, currency: "KES" })), "InvalidArgument");
    assert.equal(await codeOf(internal.ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: w.workerId, currency: "XXX" })), "InvalidArgument");
    // Made by another caller after this call's statement began (committed while it waited on the
    // key), the account is neither found nor made by that statement: it is read again.
    const venueId = randomUUID();
    const other = await t.db.pool.connect();
    try {
      await other.query("BEGIN");
      const { rows: [made] } = await other.query(
        `INSERT INTO wallet.accounts (account_id, kind, owner_kind, owner_id, currency, may_go_negative) VALUES ($1, $2, $3, $4, 'KES', false) RETURNING account_id`,
        [randomUUID(), AccountKind.VENUE_POOL, OwnerKind.VENUE, venueId],
      );
      const asked = ensureAccount(t.db.pool, AccountKind.VENUE_POOL, OwnerKind.VENUE, venueId, "KES");
      await eventually("the call's statement waiting on the uncommitted account", async () => {
        const { rows: [w] } = await t.db.pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO wallet.accounts%'`);
        return w.n === 1;
      });
      await other.query("COMMIT");
      assert.equal((await asked).account_id, made.account_id);
    } finally {
      other.release();
    }
    const { rows } = await t.db.pool.query(`SELECT count(*)::int AS n FROM wallet.accounts WHERE owner_id = $1`, [venueId]);
    assert.equal(rows[0].n, 1);
  });

  test("a posting is applied once per key; a repeat returns the first entry and moves nothing", async () => {
    const w = await newWorker();
    const key = `mpesa:${randomUUID()}`;
    const first = await tip(w.accountId, 15_000n, 700n, key);
    assert.equal(first.created, true);
    assert.equal(first.entry!.postings.length, 3);
    const again = await failure(tip(w.accountId, 15_000n, 700n, key));
    // The cause differs (a new random tip id), so this is a different request under the same key.
    assert.equal(again.code, Code.AlreadyExists);
    const replay = await internal.postEntry({
      idempotencyKey: key,
      cause: first.entry!.cause,
      postings: first.entry!.postings,
      description: first.entry!.description,
    });
    assert.equal(replay.created, false);
    assert.equal(replay.entry!.entryId, first.entry!.entryId);
    // An entry's id is in time order (UUID version 7): entries_pkey and postings_pkey grow at their end.
    assert.equal(first.entry!.entryId[14], "7", first.entry!.entryId);
    assert.equal((await balanceOf(w.accountId)).ledger!.amountMinor, 14_300n);
  });

  test("a replay is one statement: the same request answers the first entry as it was posted, another under the key is refused", async () => {
    const w = await newWorker();
    const fxUsd = (await internal.ensureAccount({ kind: AccountKind.FX_POSITION, ownerKind: OwnerKind.PLATFORM, currency: "USD" })).account!.accountId;
    const fxKes = (await internal.ensureAccount({ kind: AccountKind.FX_POSITION, ownerKind: OwnerKind.PLATFORM, currency: "KES" })).account!.accountId;
    const stripe = (await internal.ensureAccount({ kind: AccountKind.STRIPE_CLEARING, ownerKind: OwnerKind.PLATFORM, currency: "USD" })).account!.accountId;
    const usd = (m: bigint) => ({ amountMinor: m, currency: "USD" });
    const conversion = { from: usd(500n), to: kesMinor(64_600n), rate: "129.20000000", rateSource: "configured", rateTime: timestampFromDate(new Date("2026-01-02T03:04:05.678Z")) };
    const input: EntryInput = {
      idempotencyKey: `stripe:${randomUUID()}`,
      cause: create(EntryCauseSchema, { cause: { case: "stripePaymentId", value: `pi_${randomUUID()}` } }),
      postings: [
        { accountId: stripe, amountMinor: -500n, currency: "USD" },
        { accountId: fxUsd, amountMinor: 500n, currency: "USD", memo: "fx in" },
        { accountId: fxKes, amountMinor: -64_600n, currency: "KES" },
        { accountId: w.accountId, amountMinor: 64_600n, currency: "KES", memo: "tip" },
      ],
      conversions: [create(FxConversionSchema, conversion)],
      description: "Card tip",
    };
    let statements = 0;
    const counted = { query: ((...args: Parameters<typeof t.db.pool.query>) => (statements++, t.db.pool.query(...args))) as typeof t.db.pool.query };
    const first = await postEntry(counted, input);
    assert.deepEqual([first.created, statements], [true, 1]);
    statements = 0;
    const replay = await postEntry(counted, input);
    assert.deepEqual([replay.created, statements], [false, 1]);
    assert.deepEqual(replay.entry, first.entry);
    assert.deepEqual(replay.entry, (await admin.getJournalEntry({ entryId: first.entry.entryId })).entry);
    statements = 0;
    await assert.rejects(postEntry(counted, { ...input, description: "another" }), IdempotencyConflictError);
    assert.equal(statements, 1);
    assert.equal((await balanceOf(w.accountId)).ledger!.amountMinor, 64_600n);
    // Once reversed, a replay names its reversal, as GetJournalEntry does.
    const { reversal } = await admin.reverseEntry({ entryId: first.entry.entryId, idempotencyKey: `rev-${first.entry.entryId}`, reason: "refund" });
    assert.equal((await postEntry(t.db.pool, input)).entry.reversedByEntryId, reversal!.entryId);
  });

  test("bad entries are refused precisely and change nothing", async () => {
    const w = await newWorker();
    const before = await admin.getTrialBalance({});
    const unbalanced = await failure(
      internal.postEntry({ idempotencyKey: `k-${randomUUID()}`, cause: tipCause(), postings: [{ accountId: clearing, amount: kesMinor(-100n) }, { accountId: w.accountId, amount: kesMinor(99n) }] }),
    );
    assert.equal(unbalanced.code, Code.InvalidArgument);
    assert.match(unbalanced.rawMessage, /do not balance in KES/);
    const unknown = await failure(internal.postEntry({ idempotencyKey: `k-${randomUUID()}`, cause: tipCause(), postings: [{ accountId: clearing, amount: kesMinor(-100n) }, { accountId: randomUUID(), amount: kesMinor(100n) }] }));
    assert.equal(unknown.code, Code.NotFound);
    assert.match(unknown.rawMessage, /postings\[1\]\.account_id/);
    const overdraw = await failure(internal.postEntry({ idempotencyKey: `k-${randomUUID()}`, cause: tipCause(), postings: [{ accountId: w.accountId, amount: kesMinor(-100n) }, { accountId: clearing, amount: kesMinor(100n) }] }));
    assert.equal(overdraw.code, Code.FailedPrecondition);
    const currency = await failure(internal.postEntry({ idempotencyKey: `k-${randomUUID()}`, cause: tipCause(), postings: [{ accountId: clearing, amount: { amountMinor: -100n, currency: "USD" } }, { accountId: w.accountId, amount: { amountMinor: 100n, currency: "USD" } }] }));
    assert.equal(currency.code, Code.InvalidArgument);
    assert.equal(await codeOf(internal.postEntry({ idempotencyKey: "short", cause: tipCause(), postings: [] })), "InvalidArgument");
    assert.deepEqual(await admin.getTrialBalance({}), before);
    assert.equal((await balanceOf(w.accountId)).ledger!.amountMinor, 0n);
  });

  test("a posting names only an entry and accounts that exist, for good: a missing account writes nothing; accounts and entries are never removed", async () => {
    const w = await newWorker();
    const { entry } = await tip(w.accountId, 2_000n, 100n);
    const counts = async () => (await t.db.pool.query(`SELECT (SELECT count(*) FROM wallet.entries) AS entries, (SELECT count(*) FROM wallet.postings) AS postings`)).rows[0];
    const before = await counts();
    const missing = randomUUID();
    const refused = await failure(internal.postEntry({ idempotencyKey: `k-${randomUUID()}`, cause: tipCause(), postings: [{ accountId: w.accountId, amount: kesMinor(-100n) }, { accountId: missing, amount: kesMinor(100n) }] }));
    assert.equal(refused.code, Code.NotFound);
    assert.deepEqual(await counts(), before, "nothing written for a line to a missing account");
    const unused = await newWorker();
    for (const id of [w.accountId, unused.accountId]) {
      await assert.rejects(t.db.pool.query(`DELETE FROM wallet.accounts WHERE account_id = $1`, [id]), /never removed/);
      await assert.rejects(t.db.pool.query(`UPDATE wallet.accounts SET account_id = $2 WHERE account_id = $1`, [id, randomUUID()]), /never removed or renumbered/);
    }
    await assert.rejects(t.db.pool.query(`DELETE FROM wallet.entries WHERE entry_id = $1`, [entry!.entryId]), /immutable/);
    const orphans = await t.db.pool.query(
      `SELECT count(*)::int AS n FROM wallet.postings p LEFT JOIN wallet.entries e USING (entry_id) LEFT JOIN wallet.accounts a USING (account_id)
        WHERE e.entry_id IS NULL OR a.account_id IS NULL`,
    );
    assert.equal(orphans.rows[0].n, 0);
  });

  test("50 concurrent postings to one account lose no update", async () => {
    // A tip first, so the clearing and fee accounts are known as system ones: the 50 then lock only the
    // wallet, by the UPDATE's own lock (entries with two owned accounts lock ahead, tested below).
    await tip((await newWorker()).accountId, 1_000n, 100n);
    const w = await newWorker();
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => tip(w.accountId, BigInt(1_000 + i), 100n)));
    assert.ok(results.every((r) => r.created));
    const expected = Array.from({ length: 50 }, (_, i) => BigInt(1_000 + i - 100)).reduce((a, b) => a + b, 0n);
    assert.equal((await balanceOf(w.accountId)).ledger!.amountMinor, expected);
    // In posted_seq order the lines are one serial history: each balance_after is the one before plus its amount
    // (the sequence is taken after the account's lock, in the same statement).
    const { rows } = await t.db.pool.query(`SELECT amount_minor, balance_after FROM wallet.postings WHERE account_id = $1 ORDER BY posted_seq`, [w.accountId]);
    assert.equal(rows.length, 50);
    rows.reduce((before: bigint, r, i) => {
      assert.equal(r.balance_after, before + r.amount_minor, `line ${i} in posted_seq order`);
      return r.balance_after;
    }, 0n);
    assert.equal(rows[49].balance_after, expected);
    const tb = await admin.getTrialBalance({});
    assert.equal(tb.balanced, true);
  });

  test("entries moving money both ways between the same wallets at once all land (locks in account order, no deadlock)", async () => {
    const [a, b, c] = [await newWorker(), await newWorker(), await newWorker()];
    for (const w of [a, b, c]) await tip(w.accountId, 100_000n, 0n);
    // Each entry lists its wallets in a different order: a lock order that followed the lines would deadlock.
    const orders = [[a, b, c], [c, b, a], [b, a, c], [c, a, b], [a, c, b], [b, c, a]];
    const moves = Array.from({ length: 60 }, (_, i) => orders[i % orders.length]);
    const results = await Promise.allSettled(
      moves.map(([from, to1, to2]) =>
        internal.postEntry({
          idempotencyKey: `move:${randomUUID()}`,
          cause: tipCause(),
          postings: [
            { accountId: from.accountId, amount: kesMinor(-300n), memo: "out" },
            { accountId: to1.accountId, amount: kesMinor(100n), memo: "in" },
            { accountId: to2.accountId, amount: kesMinor(200n), memo: "in" },
          ],
        }),
      ),
    );
    const failed = results.filter((r) => r.status === "rejected").map((r) => ConnectError.from((r as PromiseRejectedResult).reason).rawMessage);
    assert.deepEqual(failed, []);
    const net = new Map([a, b, c].map((w) => [w, 100_000n]));
    for (const [from, to1, to2] of moves) {
      net.set(from, net.get(from)! - 300n);
      net.set(to1, net.get(to1)! + 100n);
      net.set(to2, net.get(to2)! + 200n);
    }
    for (const w of [a, b, c]) assert.equal((await balanceOf(w.accountId)).ledger!.amountMinor, net.get(w));
  });

  test("a pool distribution and postings crossing it (a wallet below the pool in id order, and the pool) all land: one lock order, no ABORTED", async () => {
    for (let round = 0; round < 5; round++) {
      const { venueId, pool, start } = await poolWithTip();
      // Wallets that sort before the pool: a split locking the pool first would lock them out of order.
      const workers: Awaited<ReturnType<typeof newWorker>>[] = [];
      while (workers.length < 2) {
        const w = await newWorker();
        if (w.accountId < pool) workers.push(w);
      }
      const split = splitPool(venueId, start, await periodEnd(), workers.map((w) => w.workerId));
      const crossing = Array.from({ length: 8 }, () =>
        internal.postEntry({
          idempotencyKey: `cross:${randomUUID()}`,
          cause: tipCause(),
          postings: [
            { accountId: clearing, amount: kesMinor(-300n) },
            { accountId: workers[0].accountId, amount: kesMinor(100n), memo: "tip" },
            { accountId: pool, amount: kesMinor(200n), memo: "pool share" },
          ],
        }),
      );
      assert.deepEqual(rejections(await Promise.allSettled([split, ...crossing])), [], `round ${round}`);
      assert.equal((await balanceOf(pool)).ledger!.amountMinor, 8n * 200n);
      assert.equal((await balanceOf(workers[0].accountId)).ledger!.amountMinor, 1_000n + 8n * 100n);
      assert.equal((await balanceOf(workers[1].accountId)).ledger!.amountMinor, 1_000n);
    }
  });

  test("a pool split whose caller stopped waiting (its deadline passed while the split waited for the pool's lock) is not posted: the venue takes it as not posted; asked again, it posts once", async () => {
    const { venueId, pool, start } = await poolWithTip();
    const workers = [await newWorker(), await newWorker()];
    const split = {
      venueId, currency: "KES", start: timestampFromDate(start), end: timestampFromDate(await periodEnd()), distributionId: randomUUID(),
      idempotencyKey: `split:${randomUUID()}`, shares: workers.map((w) => ({ workerId: w.workerId, amount: kesMinor(1_000n), memo: "share" })),
    };
    const lockPool = (c: PoolClient) => c.query("SELECT 1 FROM wallet.accounts WHERE account_id = $1 FOR UPDATE", [pool]);
    const holder = await t.db.pool.connect();
    try {
      await holder.query("BEGIN");
      await lockPool(holder);
      await assert.rejects(internal.postPoolDistribution(split, { timeoutMs: 300 }), (e) => ConnectError.from(e).code === Code.DeadlineExceeded);
      await sleep(300); // the service's own deadline passed too
      await holder.query("ROLLBACK");
      // The pool's lock had again: the split's transaction has ended, committed or not.
      await holder.query("BEGIN");
      await lockPool(holder);
      await holder.query("ROLLBACK");
    } finally {
      holder.release();
    }
    // Before, it committed once the lock was free: a split the venue had given up on, and could abandon on a later refusal.
    const posted = await t.db.pool.query("SELECT 1 FROM wallet.pool_distributions WHERE distribution_id = $1", [split.distributionId]);
    assert.equal(posted.rowCount, 0);
    assert.equal((await balanceOf(pool)).ledger!.amountMinor, 2_000n);
    await internal.postPoolDistribution(split);
    assert.equal((await balanceOf(pool)).ledger!.amountMinor, 0n);
    assert.equal((await balanceOf(workers[0].accountId)).ledger!.amountMinor, 1_000n);
  });

  test("two pool distributions naming the same new workers in opposite orders both land (their wallets are made in one order)", async () => {
    for (let round = 0; round < 6; round++) {
      // No wallets yet: each split makes them, uncommitted until it commits.
      const [w1, w2] = [randomUUID(), randomUUID()];
      const pools = await Promise.all([poolWithTip(), poolWithTip()]);
      const end = await periodEnd();
      const orders = [[w1, w2], [w2, w1]];
      const results = await Promise.allSettled(pools.map(({ venueId, start }, i) => splitPool(venueId, start, end, orders[i])));
      assert.deepEqual(rejections(results), [], `round ${round}`);
      for (const workerId of [w1, w2]) {
        const wallet = await ensureAccount(t.db.pool, AccountKind.WORKER_WALLET, OwnerKind.WORKER, workerId, "KES");
        assert.equal(wallet.balance_minor, 2_000n);
      }
    }
  });

  test("a pool left owing (a chargeback after its takings were split) refuses a later split it cannot pay, saying what it owes and what to do; nothing moves", async () => {
    const { venueId, pool, start } = await poolWithTip();
    const workers = [randomUUID(), randomUUID()];
    await splitPool(venueId, start, await periodEnd(), workers);
    // A chargeback on a tip already split: the pool owes it (as a lost dispute may leave it), its period takes nothing.
    const owing = new Date();
    await internal.postEntry({
      idempotencyKey: `chargeback-${randomUUID()}`, cause: tipCause(), allowOwnerDebt: true, description: "Card dispute lost",
      postings: [{ accountId: pool, amount: kesMinor(-1_500n) }, { accountId: clearing, amount: kesMinor(1_500n) }],
    });
    const later = await periodEnd();
    await tip(pool, 2_000n, 0n);
    const end = await periodEnd();
    const takings = await internal.getPoolTakings({ venueId, currency: "KES", start: timestampFromDate(later), end: timestampFromDate(end) });
    assert.equal(takings.collected!.amountMinor, 2_000n);
    // What a preview shows the manager before any Confirm: the pool holds KES 5 of the KES 20.
    assert.deepEqual([takings.available!.amountMinor, takings.available!.currency], [500n, "KES"]);
    const before = await balanceOf(pool);
    const refused = await failure(splitPool(venueId, later, end, workers));
    assert.equal(refused.code, Code.FailedPrecondition);
    assert.equal(refused.rawMessage, "shares: the pool holds KES 5 but the period took KES 20: it owes KES 15 from refunds or chargebacks after earlier splits; split a period that also covers them");
    assert.deepEqual(await balanceOf(pool), before);
    // The period holding the chargeback too nets it: KES 5 split.
    const both = await internal.getPoolTakings({ venueId, currency: "KES", start: timestampFromDate(owing), end: timestampFromDate(end) });
    assert.equal(both.collected!.amountMinor, 500n);
  });

  test("a pool split reversed by an admin's ReverseEntry frees its period: asked again under its key it is refused, not replayed; the period is split again", async () => {
    const { venueId, start } = await poolWithTip();
    const end = await periodEnd();
    const workers = [randomUUID(), randomUUID()];
    const { entry } = await splitPool(venueId, start, end, workers);
    const takings = () => internal.getPoolTakings({ venueId, currency: "KES", start: timestampFromDate(start), end: timestampFromDate(end) });
    assert.equal((await takings()).overlappingDistributionId !== "", true, "the split claims its period");
    await admin.reverseEntry({ entryId: entry!.entryId, idempotencyKey: `rev-${entry!.entryId}`, reason: "wrong shares" });
    const after = await takings();
    assert.equal(after.overlappingDistributionId, "", "the reversed split no longer claims the period");
    assert.equal(after.collected!.amountMinor, 2_000n);
    // The first split asked again under its key (the venue's answer was lost): refused, not answered as posted.
    const first = (await admin.getJournalEntry({ entryId: entry!.entryId })).entry!;
    const retry = await failure(internal.postPoolDistribution({
      venueId, currency: "KES", start: timestampFromDate(start), end: timestampFromDate(end), distributionId: first.cause!.cause.value as string,
      idempotencyKey: first.idempotencyKey, shares: workers.map((workerId) => ({ workerId, amount: kesMinor(1_000n), memo: "share" })),
    }));
    assert.equal(Code[retry.code], "FailedPrecondition");
    assert.match(retry.rawMessage, /idempotency_key: the split posted under it .* was reversed/);
    const again = await splitPool(venueId, start, end, workers);
    assert.equal(again.created, true);
  });

  test("a pool split's reversal is not reversed: its period was freed (and may be split again), so the split would be paid twice", async () => {
    const { venueId, start } = await poolWithTip();
    const end = await periodEnd();
    const { entry } = await splitPool(venueId, start, end, [randomUUID(), randomUUID()]);
    const { reversal } = await admin.reverseEntry({ entryId: entry!.entryId, idempotencyKey: `rev-${entry!.entryId}`, reason: "wrong shares" });
    // Before, this paid the split again while its period stayed free: a second split of the same tips went through.
    await assert.rejects(
      admin.reverseEntry({ entryId: reversal!.entryId, idempotencyKey: `rev-${reversal!.entryId}`, reason: "undo" }),
      (e: ConnectError) => e.code === Code.FailedPrecondition && new RegExp(`entry_id: .*pool split ${entry!.entryId}`).test(e.rawMessage),
    );
    assert.equal((await internal.getPoolTakings({ venueId, currency: "KES", start: timestampFromDate(start), end: timestampFromDate(end) })).collected!.amountMinor, 2_000n);
  });

  test("a pool split's key: the same split again (however worded) answers the first entry; another split under it is ALREADY_EXISTS naming the key, and moves nothing", async () => {
    const { venueId, pool, start } = await poolWithTip();
    const end = await periodEnd();
    const workers = [randomUUID(), randomUUID()];
    const distributionId = randomUUID();
    const idempotencyKey = `venue-distribution:${distributionId}`;
    const split = (shares: bigint[], over: { description?: string; memo?: string; distributionId?: string; end?: Date } = {}) =>
      internal.postPoolDistribution({
        venueId,
        currency: "KES",
        start: timestampFromDate(start),
        end: timestampFromDate(over.end ?? end),
        distributionId: over.distributionId ?? distributionId,
        idempotencyKey,
        description: over.description ?? "Tip pool (rule v1)",
        shares: workers.map((workerId, i) => ({ workerId, amount: kesMinor(shares[i]), memo: over.memo ?? "share" })),
      });
    const first = await split([1_500n, 500n]);
    assert.equal(first.created, true);
    // The venue's retry of the same split, worded by a newer release: the first entry, nothing posted again.
    for (const retry of [split([1_500n, 500n]), split([1_500n, 500n], { description: "Tip pool, rule v1", memo: "Amina: 3/4" })]) {
      const again = await retry;
      assert.equal(again.created, false);
      assert.equal(again.entry!.entryId, first.entry!.entryId);
    }
    const entries = async () => (await t.db.pool.query(`SELECT count(*)::int AS n FROM wallet.entries WHERE idempotency_key = $1`, [idempotencyKey])).rows[0].n;
    const wallets = await Promise.all(workers.map((w) => ensureAccount(t.db.pool, AccountKind.WORKER_WALLET, OwnerKind.WORKER, w, "KES")));
    const others = [split([1_000n, 1_000n]), split([1_500n, 500n], { distributionId: randomUUID() }), split([1_500n, 500n], { end: new Date(end.getTime() - 1) })].map(failure);
    for (const other of others) {
      const e = await other;
      assert.equal(Code[e.code], "AlreadyExists");
      assert.match(e.rawMessage, /idempotency_key/);
      assert.deepEqual(e.findDetails(IdempotencyKeyConflictSchema).map((d) => d.idempotencyKey), [idempotencyKey]);
    }
    assert.equal(await entries(), 1);
    assert.equal((await balanceOf(pool)).ledger!.amountMinor, 0n);
    for (const [i, amount] of [1_500n, 500n].entries()) assert.equal((await balanceOf(wallets[i].account_id)).ledger!.amountMinor, amount);
  });

  test("the same key posted 20 times at once is applied once", async () => {
    const w = await newWorker();
    const req = { idempotencyKey: `mpesa:${randomUUID()}`, cause: tipCause(), postings: [{ accountId: clearing, amount: kesMinor(-5_000n) }, { accountId: w.accountId, amount: kesMinor(5_000n) }] };
    const results = await Promise.all(Array.from({ length: 20 }, () => internal.postEntry(req)));
    assert.equal(results.filter((r) => r.created).length, 1);
    assert.equal(new Set(results.map((r) => r.entry!.entryId)).size, 1);
    assert.equal((await balanceOf(w.accountId)).ledger!.amountMinor, 5_000n);
  });

  test("holds: place, refuse beyond available or a limit (naming it), settle with the B2C charge, release", async () => {
    const w = await newWorker();
    await tip(w.accountId, 3_000_000n, 0n); // KES 30,000
    const payoutId = randomUUID();
    const placed = await internal.placeHold({ accountId: w.accountId, amount: kesMinor(1_000_000n), payoutId, idempotencyKey: `hold-${payoutId}` });
    assert.equal(placed.hold!.status, HoldStatus.HELD);
    assert.equal(placed.balance!.available!.amountMinor, 2_000_000n);
    assert.equal(placed.balance!.held!.amountMinor, 1_000_000n);
    const replay = await internal.placeHold({ accountId: w.accountId, amount: kesMinor(1_000_000n), payoutId, idempotencyKey: `hold-${payoutId}` });
    assert.equal(replay.hold!.holdId, placed.hold!.holdId, "same key, same hold");
    assert.equal(await codeOf(internal.placeHold({ accountId: w.accountId, amount: kesMinor(5n), payoutId, idempotencyKey: `other-${payoutId}` })), "AlreadyExists");

    const tooMuch = await failure(internal.placeHold({ accountId: w.accountId, amount: kesMinor(2_000_100n), payoutId: randomUUID(), idempotencyKey: `hold-${randomUUID()}` }));
    assert.equal(tooMuch.code, Code.FailedPrecondition);
    assert.match(tooMuch.rawMessage, /available KES 20000\.00/);
    // Basic tier: KES 20,000 per withdrawal and KES 50,000 a day.
    const perTx = await internal.placeHold({ accountId: w.accountId, amount: kesMinor(2_000_000n), payoutId: randomUUID(), idempotencyKey: `hold-${randomUUID()}` });
    assert.equal(perTx.balance!.available!.amountMinor, 0n);

    const rich = await newWorker();
    await tip(rich.accountId, 10_000_000n, 0n);
    for (let i = 0; i < 2; i++) await internal.placeHold({ accountId: rich.accountId, amount: kesMinor(2_000_000n), payoutId: randomUUID(), idempotencyKey: `hold-${randomUUID()}` });
    const daily = await failure(internal.placeHold({ accountId: rich.accountId, amount: kesMinor(1_500_000n), payoutId: randomUUID(), idempotencyKey: `hold-${randomUUID()}` }));
    assert.equal(daily.code, Code.ResourceExhausted);
    assert.match(daily.rawMessage, /daily withdrawal limit of KES 50000\.00 reached: KES 10000\.00 left/);
    const [limit] = daily.findDetails(WithdrawalLimitSchema);
    assert.equal(limit.kind, LimitKind.DAILY);
    assert.equal(limit.remaining!.amountMinor, 1_000_000n);
    const single = await failure(internal.placeHold({ accountId: rich.accountId, amount: kesMinor(2_000_100n), payoutId: randomUUID(), idempotencyKey: `hold-${randomUUID()}` }));
    assert.equal(single.code, Code.ResourceExhausted);
    assert.equal(single.findDetails(WithdrawalLimitSchema)[0].kind, LimitKind.PER_TRANSACTION);
    const limits = await rich.client.getWithdrawalLimits({ currency: "KES" });
    assert.equal(limits.tier, UserTier.BASIC);
    assert.equal(limits.limits.find((l) => l.kind === LimitKind.DAILY)!.used!.amountMinor, 4_000_000n);

    // A fee in another currency than the hold's: before, its number was posted as shillings and the hold settled.
    const otherCurrency = await failure(internal.settleHold({ holdId: placed.hold!.holdId, externalReference: "RKT1234567", transferFee: { amountMinor: 1_100n, currency: "USD" } }));
    assert.equal(otherCurrency.code, Code.InvalidArgument);
    assert.match(otherCurrency.rawMessage, /^transfer_fee\.currency: /);
    const settled = await internal.settleHold({ holdId: placed.hold!.holdId, externalReference: "RKT1234567", transferFee: kesMinor(1_100n) });
    assert.equal(settled.hold!.status, HoldStatus.SETTLED);
    assert.equal(settled.entry!.postings.length, 4);
    const again = await internal.settleHold({ holdId: placed.hold!.holdId, externalReference: "RKT1234567", transferFee: kesMinor(1_100n) });
    assert.equal(again.entry!.entryId, settled.entry!.entryId, "settling twice moves money once");
    assert.equal(await codeOf(internal.releaseHold({ holdId: placed.hold!.holdId, reason: "late failure" })), "FailedPrecondition");
    const b = await balanceOf(w.accountId);
    assert.deepEqual([b.ledger!.amountMinor, b.held!.amountMinor, b.available!.amountMinor], [2_000_000n, 2_000_000n, 0n]);

    const released = await internal.releaseHold({ holdId: perTx.hold!.holdId, reason: "B2C failed: 2001" });
    assert.equal(released.hold!.status, HoldStatus.RELEASED);
    assert.equal((await balanceOf(w.accountId)).available!.amountMinor, 2_000_000n);
    assert.equal(await codeOf(internal.settleHold({ holdId: perTx.hold!.holdId, externalReference: "X" })), "FailedPrecondition");
    assert.equal(await codeOf(internal.releaseHold({ holdId: randomUUID() })), "NotFound");
    assert.equal((await admin.getTrialBalance({})).balanced, true);
  });

  test("placing a hold is four statements, settling one three, releasing one two; each moves its money and writes its event", async () => {
    await internal.ensureAccount({ kind: AccountKind.PAYOUT_CLEARING, ownerKind: OwnerKind.PLATFORM, currency: "KES" });
    const w = await newWorker();
    await tip(w.accountId, 1_000_000n, 0n);
    let statements = 0;
    const counted = (tx: Queryable) => ({ query: ((...args: Parameters<Queryable["query"]>) => (statements++, tx.query(...args))) as Queryable["query"] });
    const place = (amount: bigint) => {
      const payoutId = randomUUID();
      return withTransaction(t.db.pool, (tx) => placeHold(counted(tx), { accountId: w.accountId, amountMinor: amount, currency: "KES", payoutId, idempotencyKey: `hold-${payoutId}` }));
    };
    const first = await place(300_000n);
    assert.deepEqual([first.hold.status, first.account.balance_minor, first.account.held_minor, statements], [HoldStatus.HELD, 1_000_000n, 300_000n, 4]);
    const [toSettle, toRelease] = [first.hold, (await place(200_000n)).hold];
    statements = 0;
    const { hold: settled, entry } = await withTransaction(t.db.pool, (tx) => settleHold(counted(tx), toSettle.holdId, "RKT0000001", 500n));
    assert.deepEqual([settled.status, entry.postings.length, statements], [HoldStatus.SETTLED, 4, 3]);
    statements = 0;
    const released = await withTransaction(t.db.pool, (tx) => releaseHold(counted(tx), toRelease.holdId, "b2c failed"));
    assert.deepEqual([released.status, statements], [HoldStatus.RELEASED, 2]);
    const b = await balanceOf(w.accountId);
    assert.deepEqual([b.ledger!.amountMinor, b.held!.amountMinor], [700_000n, 0n]);
    const events = await t.db.pool.query<{ subject: string }>(
      `SELECT subject FROM wallet.outbox WHERE subject LIKE 'ttip.wallet.payout%' AND (position(convert_to($1, 'UTF8') IN payload) > 0 OR position(convert_to($2, 'UTF8') IN payload) > 0) ORDER BY seq`,
      [toSettle.payoutId, toRelease.payoutId],
    );
    assert.deepEqual(events.rows.map((r) => r.subject), ["ttip.wallet.payout_held", "ttip.wallet.payout_held", "ttip.wallet.payout_settled", "ttip.wallet.payout_released"]);
    // Resolved twice: the first outcome, nothing moved again.
    assert.equal((await withTransaction(t.db.pool, (tx) => settleHold(tx, toSettle.holdId, "RKT0000001", 500n))).entry.entryId, entry.entryId);
    assert.equal(await codeOf(internal.settleHold({ holdId: toRelease.holdId, externalReference: "RKT0000002" })), "FailedPrecondition");
    assert.deepEqual((await balanceOf(w.accountId)).ledger, b.ledger);
  });

  test("a hold's outcome event is written only with its outcome: a resolve that finds the hold resolved already writes no event and is refused", async () => {
    await internal.ensureAccount({ kind: AccountKind.PAYOUT_CLEARING, ownerKind: OwnerKind.PLATFORM, currency: "KES" });
    const w = await newWorker();
    await tip(w.accountId, 100_000n, 0n);
    for (const outcome of ["settle", "release"] as const) {
      const payoutId = randomUUID();
      const { hold } = await internal.placeHold({ accountId: w.accountId, amount: kesMinor(10_000n), payoutId, idempotencyKey: `hold-${payoutId}` });
      // The row lock taken with the hold rules this out between calls; the statement must still not announce an
      // outcome it did not record. So, inside the transaction, the hold is resolved just before the outcome's UPDATE.
      let eventsWritten = -1;
      const interleaved = (tx: Queryable): Queryable => ({
        query: (async (text: string, values?: unknown[]) => {
          if (typeof text !== "string" || !text.includes("UPDATE wallet.holds SET status")) return tx.query(text, values);
          await tx.query(`UPDATE wallet.holds SET status = $2, resolved_at = now() WHERE hold_id = $1`, [hold!.holdId, HoldStatus.RELEASED]);
          const result = await tx.query(text, values);
          const { rows: [n] } = await tx.query<{ n: number }>(`SELECT count(*)::int AS n FROM wallet.outbox WHERE subject IN ('ttip.wallet.payout_settled', 'ttip.wallet.payout_released') AND position(convert_to($1, 'UTF8') IN payload) > 0`, [payoutId]);
          eventsWritten = n.n;
          return result;
        }) as Queryable["query"],
      });
      const resolve = withTransaction<unknown>(t.db.pool, (tx) =>
        outcome === "settle" ? settleHold(interleaved(tx), hold!.holdId, "RKT0000009", 0n) : releaseHold(interleaved(tx), hold!.holdId, "b2c failed"),
      );
      assert.equal(await codeOf(resolve), "FailedPrecondition", `${outcome}: refused as the hold's state, not INTERNAL`);
      assert.equal(eventsWritten, 0, `${outcome}: no outcome event without the outcome`);
      const status = (await t.db.pool.query<{ status: number }>(`SELECT status FROM wallet.holds WHERE hold_id = $1`, [hold!.holdId])).rows[0].status;
      assert.equal(status, HoldStatus.HELD, `${outcome}: the refused transaction left the hold as it was`);
      await internal.releaseHold({ holdId: hold!.holdId, reason: "cleanup" });
    }
  });

  test("a hold settled and released by racing calls resolves once: one outcome, its money moved once, one event", async () => {
    await internal.ensureAccount({ kind: AccountKind.PAYOUT_CLEARING, ownerKind: OwnerKind.PLATFORM, currency: "KES" });
    const w = await newWorker();
    await tip(w.accountId, 100_000n, 0n);
    let ledger = 100_000n;
    for (let round = 0; round < 4; round++) {
      const payoutId = randomUUID();
      const { hold } = await internal.placeHold({ accountId: w.accountId, amount: kesMinor(10_000n), payoutId, idempotencyKey: `hold-${payoutId}` });
      const holdId = hold!.holdId;
      const settles = Array.from({ length: 4 }, () => codeOf(internal.settleHold({ holdId, externalReference: `RKT${round}`, transferFee: kesMinor(0n) })));
      const releases = Array.from({ length: 4 }, () => codeOf(internal.releaseHold({ holdId, reason: "b2c failed" })));
      const [settled, released] = [await Promise.all(settles), await Promise.all(releases)];
      const status = (await t.db.pool.query<{ status: number }>(`SELECT status FROM wallet.holds WHERE hold_id = $1`, [holdId])).rows[0].status;
      const won = status === HoldStatus.SETTLED;
      assert.deepEqual([settled, released], won ? [Array(4).fill("ok"), Array(4).fill("FailedPrecondition")] : [Array(4).fill("FailedPrecondition"), Array(4).fill("ok")], `round ${round}`);
      if (won) ledger -= 10_000n;
      const b = await balanceOf(w.accountId);
      assert.deepEqual([b.ledger!.amountMinor, b.held!.amountMinor], [ledger, 0n], `round ${round}: the amount left the wallet once or not at all, and is held no more`);
      const { rows: [n] } = await t.db.pool.query<{ entries: number; events: number }>(
        `SELECT (SELECT count(*)::int FROM wallet.entries WHERE idempotency_key = $1) AS entries,
                (SELECT count(*)::int FROM wallet.outbox WHERE subject IN ('ttip.wallet.payout_settled', 'ttip.wallet.payout_released') AND position(convert_to($2, 'UTF8') IN payload) > 0) AS events`,
        [`hold:${holdId}:settle`, payoutId],
      );
      assert.deepEqual([n.entries, n.events], [won ? 1 : 0, 1], `round ${round}: one settlement entry if settled, one outcome event`);
    }
  });

  test("the B2C charge comes from the fee schedule's band when the caller does not name it", async () => {
    assert.equal((await internal.quotePayoutFee({ amount: kesMinor(150_000n) })).fee!.amountMinor, 500n, "KES 1,500: band 101-1,500");
    assert.equal((await internal.quotePayoutFee({ amount: kesMinor(150_100n) })).fee!.amountMinor, 900n, "KES 1,501: next band");
    assert.match((await failure(internal.quotePayoutFee({ amount: kesMinor(25_000_100n) }))).rawMessage, /^amount: no M-Pesa B2C fee band covers KES 250,001/);
    const w = await newWorker();
    await tip(w.accountId, 1_000_000n, 0n);
    const payoutId = randomUUID();
    const { hold } = await internal.placeHold({ accountId: w.accountId, amount: kesMinor(150_100n), payoutId, idempotencyKey: `hold-${payoutId}` });
    const { entry } = await internal.settleHold({ holdId: hold!.holdId, externalReference: "RKT7654321" });
    const charge = entry!.postings.filter((p) => p.memo === "B2C charge").map((p) => p.amount!.amountMinor);
    assert.deepEqual(charge, [-900n, 900n], "KES 9 from platform fees to the B2C float");
    assert.equal((await balanceOf(w.accountId)).ledger!.amountMinor, 1_000_000n - 150_100n, "the worker pays no charge");
  });

  test("a reversal mirrors an entry once; a second is refused", async () => {
    const w = await newWorker();
    const { entry } = await tip(w.accountId, 2_000n, 100n);
    const { reversal } = await admin.reverseEntry({ entryId: entry!.entryId, idempotencyKey: `rev-${entry!.entryId}`, reason: "customer refund" });
    assert.equal(reversal!.cause!.cause.value, entry!.entryId);
    assert.deepEqual(reversal!.postings.map((p) => p.amount!.amountMinor), entry!.postings.map((p) => -p.amount!.amountMinor));
    assert.equal((await balanceOf(w.accountId)).ledger!.amountMinor, 0n);
    const again = await admin.reverseEntry({ entryId: entry!.entryId, idempotencyKey: `rev-${entry!.entryId}`, reason: "customer refund" });
    assert.equal(again.reversal!.entryId, reversal!.entryId, "the same request is answered again");
    assert.equal(await codeOf(admin.reverseEntry({ entryId: entry!.entryId, idempotencyKey: `rev2-${entry!.entryId}`, reason: "again" })), "FailedPrecondition");
    assert.equal((await admin.getJournalEntry({ entryId: entry!.entryId })).entry!.reversedByEntryId, reversal!.entryId);
    await assert.rejects(t.db.pool.query(`UPDATE wallet.postings SET amount_minor = 1 WHERE entry_id = $1`, [entry!.entryId]), /immutable/);
  });

  test("money that has left is not given back by a reversal: a settled payout's entry, and a take-back for a tip's refund (M-Pesa's, a card's), are refused; a card tip's credit is reversed", async () => {
    const w = await newWorker();
    const { entry: credit } = await tip(w.accountId, 300_000n, 0n);
    const payoutId = randomUUID();
    const { hold } = await internal.placeHold({ accountId: w.accountId, amount: kesMinor(100_000n), payoutId, idempotencyKey: `hold-${payoutId}` });
    const { entry: settled } = await internal.settleHold({ holdId: hold!.holdId, externalReference: "RKT7654322" });
    // Payment's take-back of a refunded tip: posted by PostEntry, its cause the credit it takes back.
    const { entry: takeBack } = await internal.postEntry({
      idempotencyKey: `reversal-${credit!.entryId}`, cause: causeOf("reversedEntryId", credit!.entryId),
      postings: [{ accountId: clearing, amount: kesMinor(50_000n) }, { accountId: w.accountId, amount: kesMinor(-50_000n), memo: "tip reversed" }],
      description: "M-Pesa reversal",
    });
    // A card tip's refund: payment posts it under the tip's own cause, after the credit.
    const card = causeOf("stripePaymentId", `pi_${randomUUID()}`);
    const cardLeg = (minor: bigint) => [{ accountId: clearing, amount: kesMinor(-minor) }, { accountId: w.accountId, amount: kesMinor(minor), memo: "card tip" }];
    await internal.postEntry({ idempotencyKey: `card:${randomUUID()}`, cause: card, postings: cardLeg(40_000n), description: "Card tip" });
    const { entry: cardRefund } = await internal.postEntry({ idempotencyKey: `card-refund:${randomUUID()}`, cause: card, postings: cardLeg(-40_000n), description: "Refund of card tip" });
    const before = (await balanceOf(w.accountId)).ledger!.amountMinor;
    // Before, the payout's mirror put KES 1,000 back in the wallet (paid by M-Pesa, to be withdrawn again), and the
    // take-backs' paid the worker again for a tip the payer had back.
    const refusals = [
      [settled!, /settled payout .* which M-Pesa paid/],
      [takeBack!, /took a tip's credit back for its refund/],
      [cardRefund!, /took the tip stripePaymentId .* back from its recipient or gave it back to the payer/],
    ] as const;
    for (const [entry, why] of refusals) {
      const refused = await failure(admin.reverseEntry({ entryId: entry.entryId, idempotencyKey: `rev-${entry.entryId}`, reason: "mistake" }));
      assert.equal(Code[refused.code], "FailedPrecondition");
      assert.match(refused.rawMessage, why);
    }
    assert.equal((await balanceOf(w.accountId)).ledger!.amountMinor, before, "nothing given back");
    // A tip's credits stay an admin's to reverse: a card tip's, and a held tip's release from suspense (its cause's
    // second entry, after the parking).
    const other = causeOf("stripePaymentId", `pi_${randomUUID()}`);
    const { entry: credited } = await internal.postEntry({ idempotencyKey: `card:${randomUUID()}`, cause: other, postings: cardLeg(10_000n), description: "Card tip" });
    await admin.reverseEntry({ entryId: credited!.entryId, idempotencyKey: `rev-${credited!.entryId}`, reason: "credited to the wrong worker" });
    const suspense = (await internal.ensureAccount({ kind: AccountKind.SUSPENSE, ownerKind: OwnerKind.PLATFORM, currency: "KES" })).account!.accountId;
    const held = causeOf("mpesaReceipt", `RKT${randomUUID().slice(0, 7).toUpperCase()}`);
    await internal.postEntry({ idempotencyKey: `held:${randomUUID()}`, cause: held, description: "Tip held for review",
      postings: [{ accountId: clearing, amount: kesMinor(-20_000n) }, { accountId: suspense, amount: kesMinor(20_000n) }] });
    const { entry: released } = await internal.postEntry({ idempotencyKey: `approved:${randomUUID()}`, cause: held, description: "Tip approved",
      postings: [{ accountId: suspense, amount: kesMinor(-20_000n) }, { accountId: w.accountId, amount: kesMinor(20_000n) }] });
    await admin.reverseEntry({ entryId: released!.entryId, idempotencyKey: `rev-${released!.entryId}`, reason: "approved for the wrong worker" });
    assert.equal((await balanceOf(w.accountId)).ledger!.amountMinor, before, "the credits undone");
  });

  test("entries are listed by their idempotency keys, oldest first, read whole; a key with nothing posted is left out", async () => {
    const w = await newWorker();
    const [first, second] = [`mpesa:${randomUUID()}`, `mpesa:${randomUUID()}`];
    await tip(w.accountId, 2_000n, 100n, first);
    await tip(w.accountId, 3_000n, 0n, second);
    await tip(w.accountId, 4_000n, 0n);
    const { entries } = await admin.listJournalEntries({ idempotencyKeys: [second, `never-posted:${randomUUID()}`, first] });
    assert.deepEqual(entries.map((e) => e.idempotencyKey), [first, second]);
    assert.deepEqual(entries[0].postings.map((p) => p.amount!.amountMinor), [-2_000n, 1_900n, 100n]);
    assert.equal(await codeOf(admin.listJournalEntries({ idempotencyKeys: [] })), "InvalidArgument", "no key");
  });

  test("a USD card tip lands in a KES wallet at a recorded rate, balanced per currency", async () => {
    const w = await newWorker();
    const stripe = (await internal.ensureAccount({ kind: AccountKind.STRIPE_CLEARING, ownerKind: OwnerKind.PLATFORM, currency: "USD" })).account!.accountId;
    const fxUsd = (await internal.ensureAccount({ kind: AccountKind.FX_POSITION, ownerKind: OwnerKind.PLATFORM, currency: "USD" })).account!.accountId;
    const fxKes = (await internal.ensureAccount({ kind: AccountKind.FX_POSITION, ownerKind: OwnerKind.PLATFORM, currency: "KES" })).account!.accountId;
    const answer = await internal.quoteTipFees({ amount: { amountMinor: 1_000n, currency: "USD" }, rail: PaymentRail.CARD, customerCoversFee: true, workerId: w.workerId });
    const quote = answer.quote!;
    assert.deepEqual(answer.workerWalletCurrencies, ["KES"], "what chose KES, for payment to remember");
    assert.equal(quote.workerReceives!.currency, "KES");
    assert.equal(quote.workerReceives!.amountMinor, 129_200n);
    const c = quote.conversion!;
    assert.equal(c.rate, "129.20000000");
    const usd = (m: bigint) => ({ amountMinor: m, currency: "USD" });
    const usdFees = (await internal.ensureAccount({ kind: AccountKind.PLATFORM_FEES, ownerKind: OwnerKind.PLATFORM, currency: "USD" })).account!.accountId;
    const posted = await internal.postEntry({
      idempotencyKey: `stripe:pi_${randomUUID()}`,
      cause: create(EntryCauseSchema, { cause: { case: "stripePaymentId", value: "pi_123" } }),
      postings: [
        { accountId: stripe, amount: usd(-quote.customerPays!.amountMinor) },
        { accountId: fxUsd, amount: usd(1_000n) },
        { accountId: usdFees, amount: usd(quote.customerPays!.amountMinor - 1_000n) },
        { accountId: fxKes, amount: kesMinor(-c.to!.amountMinor) },
        { accountId: w.accountId, amount: kesMinor(c.to!.amountMinor) },
      ],
      conversions: [c],
      description: "Card tip",
    });
    assert.equal(posted.entry!.conversions[0].rate, "129.20000000");
    assert.equal(posted.entry!.conversions[0].rateSource, "configured");
    assert.equal((await balanceOf(w.accountId)).ledger!.amountMinor, 129_200n);
    const tb = await admin.getTrialBalance({});
    assert.equal(tb.balanced, true);
    assert.deepEqual(tb.lines.map((l) => [l.currency, l.netMinor]), [["KES", 0n], ["USD", 0n]]);
  });

  test("the old pool RPCs are deprecated: SetPoolRules and DistributePool refuse with FAILED_PRECONDITION naming the venue service and move nothing", async () => {
    const venueId = randomUUID();
    const pool = (await internal.ensureAccount({ kind: AccountKind.VENUE_POOL, ownerKind: OwnerKind.VENUE, ownerId: venueId, currency: "KES" })).account!.accountId;
    await tip(pool, 100_001n, 0n);
    for (const call of [
      () => internal.setPoolRules({ venueId, members: [{ workerId: randomUUID(), shares: 1 }], idempotencyKey: `rules-${venueId}` }),
      () => internal.distributePool({ venueId, currency: "KES", idempotencyKey: `dist-${venueId}` }),
    ]) {
      const err = await call().then(() => assert.fail("refused"), (e: unknown) => ConnectError.from(e));
      assert.equal(err.code, Code.FailedPrecondition);
      assert.match(err.rawMessage, /ttip\.venue\.v1\.VenueService/);
    }
    assert.equal((await balanceOf(pool)).ledger!.amountMinor, 100_001n, "the pool keeps its takings");
  });

  test("a worker is quoted M-Pesa's payout fee before withdrawing (the band the payout uses); others are refused", async () => {
    const w = await newWorker();
    assert.equal((await w.client.quoteWithdrawalFee({ amount: kesMinor(150_000n) })).fee!.amountMinor, 500n, "KES 1,500: band 101-1,500");
    assert.equal((await w.client.quoteWithdrawalFee({ amount: kesMinor(150_100n) })).fee!.amountMinor, 900n, "KES 1,501: next band");
    // Past the last band: refused naming the field and the range (before: OUT_OF_RANGE naming neither).
    const past = await failure(w.client.quoteWithdrawalFee({ amount: kesMinor(30_000_000n) }));
    assert.equal(Code[past.code], Code[Code.InvalidArgument]);
    assert.match(past.rawMessage, /^amount: no M-Pesa B2C fee band covers KES 300,000: payouts are KES 1 to KES 250,000/);
    assert.equal(await codeOf(t.client(WalletService, { subject: randomUUID(), roles: ["customer"] }).quoteWithdrawalFee({ amount: kesMinor(150_000n) })), "PermissionDenied");
  });

  test("a worker sees only their own wallet; history pages and filters; anonymous and wrong roles are refused", async () => {
    const w = await newWorker();
    const other = await newWorker();
    await tip(other.accountId, 9_999n, 100n);
    for (let i = 1; i <= 7; i++) await tip(w.accountId, BigInt(i * 1_000), 100n);
    const bal = await w.client.getBalance({});
    assert.deepEqual(bal.balances.map((b) => [b.accountId, b.ledger!.amountMinor]), [[w.accountId, 27_300n]]);
    const seen: bigint[] = [];
    let token = "";
    do {
      const page = await w.client.listTransactions({ page: { pageSize: 3, pageToken: token } });
      assert.ok(page.transactions.length <= 3);
      seen.push(...page.transactions.map((x) => x.amount!.amountMinor));
      token = page.page!.nextPageToken;
    } while (token);
    assert.deepEqual(seen, [6_900n, 5_900n, 4_900n, 3_900n, 2_900n, 1_900n, 900n], "newest first, each once");
    assert.equal((await w.client.listTransactions({ kinds: [TransactionKind.PAYOUT] })).transactions.length, 0);
    assert.equal(await codeOf(w.client.listTransactions({ page: { pageToken: "bm9wZQ" } })), "InvalidArgument");
    // A token that parses but names a line past the column's smallint: refused, not PostgreSQL's range error as INTERNAL.
    const pastLine = Buffer.from(JSON.stringify(["1", "40000"])).toString("base64url");
    assert.equal(await codeOf(w.client.listTransactions({ page: { pageToken: pastLine } })), "InvalidArgument");
    assert.equal(await codeOf(t.client(WalletService).getBalance({})), "Unauthenticated");
    assert.equal(await codeOf(t.client(WalletService, { subject: w.workerId, roles: ["customer"] }).getBalance({})), "PermissionDenied");
    assert.equal(await codeOf(t.client(WalletAdminService, { subject: w.workerId, roles: ["worker"] }).getTrialBalance({})), "PermissionDenied");
  });

  test("monthly statement: opening, rows and closing, also as RFC 4180 CSV; a future month is refused", async () => {
    const w = await newWorker();
    const posted = [(await tip(w.accountId, 1_000n, 100n)).entry!, (await tip(w.accountId, 2_000n, 100n)).entry!];
    // The month of the first posting itself, not "now" read after it: seconds before a Nairobi month ends,
    // now (or the second posting) may already be in the next month.
    const month = nairobiMonthOf(timestampDate(posted[0].postedAt!));
    const balances = [900n, 2_800n].filter((_, i) => nairobiMonthOf(timestampDate(posted[i].postedAt!)).month === month.month);
    const req = { ...month, currency: "KES", format: StatementFormat.CSV };
    const s = await w.client.getStatement(req);
    assert.equal(s.openingBalance!.amountMinor, 0n);
    assert.equal(s.closingBalance!.amountMinor, balances.at(-1));
    assert.equal(s.rows.length, balances.length);
    const csv = new TextDecoder().decode(s.csv).split("\r\n");
    assert.equal(csv[0], "posted_at,entry_id,description,amount_KES,balance_after_KES");
    assert.match(csv[2], /,Tip by M-Pesa,9\.00,9\.00$/);
    assert.equal(csv[2 + balances.length], `,,closing balance,,${(Number(balances.at(-1)) / 100).toFixed(2)}`);
    assert.equal(await codeOf(w.client.getStatement({ ...req, year: req.year + 1 })), "FailedPrecondition");
    assert.equal(await codeOf(w.client.getStatement({ ...req, month: 13 })), "InvalidArgument");
  });

  test("fee schedules are versioned; quotes name the version they used", async () => {
    const w = await newWorker();
    const q1 = await t.client(WalletService).quoteFees({ amount: kesMinor(10_000n), rail: PaymentRail.MPESA, workerId: w.workerId });
    assert.equal(q1.quote!.feeScheduleVersion, 1);
    assert.equal(q1.quote!.platformFee!.amountMinor, 500n);
    const { mpesaB2cBands } = (await admin.listFeeSchedules({ currency: "KES" })).schedules[0];
    // A KES schedule without M-Pesa's B2C tariff, or one short of M-Pesa's largest payout, would
    // price no withdrawal (b2cFee refuses an amount no band covers): refused, naming the field.
    for (const bands of [[], mpesaB2cBands.filter((b) => b.maxMinor <= 15_000_000n)]) {
      const short = await failure(admin.createFeeSchedule({ idempotencyKey: `fees-${randomUUID()}`, schedule: { currency: "KES", platformFeeCapMinor: 1n, mpesaB2cBands: bands } }));
      assert.equal(short.code, Code.InvalidArgument);
      assert.equal(short.rawMessage, "schedule.mpesa_b2c_bands: must cover every payout M-Pesa allows, 1000 to 25000000 minor units");
    }
    assert.equal((await admin.listFeeSchedules({ currency: "KES" })).schedules.length, 1, "the refused schedules were not created");
    const request = {
      idempotencyKey: `fees-${randomUUID()}`,
      schedule: { currency: "KES", platformFeeBps: 300, platformFeeMinMinor: 0n, platformFeeCapMinor: 20_000n, cardFeeBps: 290, cardFeeFixedMinor: 0n, mpesaB2cBands },
    };
    // It changes what every tip pays: without the device step-up the service itself refuses it.
    const adminId = randomUUID();
    const noStepUp = await failure(t.client(WalletAdminService, { subject: adminId, roles: ["admin"] }).createFeeSchedule(request));
    assert.equal(noStepUp.code, Code.PermissionDenied);
    assert.match(noStepUp.rawMessage, /CreateFeeSchedule moves money or grants access and needs the admin's device step-up/);
    const steppedUp = t.client(WalletAdminService, { subject: adminId, roles: ["admin"], stepUp: true });
    const created = await steppedUp.createFeeSchedule(request);
    assert.equal(created.schedule!.version, 2);
    assert.equal((await steppedUp.createFeeSchedule(request)).schedule!.version, 2, "a retry is the same version");
    // A corrected schedule sent again under the key of the one it corrects is refused, not answered with the typo.
    const corrected = await failure(steppedUp.createFeeSchedule({ ...request, schedule: { ...request.schedule, platformFeeBps: 250 } }));
    assert.equal(corrected.code, Code.AlreadyExists);
    assert.match(corrected.rawMessage, /^idempotency_key: already used for a different request \(CreateFeeSchedule made KES v2 with other terms\)/);
    // A card fee of the whole charge (10000) would leave no charge that covers a tip: over 20% is refused as a typo.
    const wholeCharge = await failure(steppedUp.createFeeSchedule({ ...request, idempotencyKey: `fees-${randomUUID()}`, schedule: { ...request.schedule, cardFeeBps: 10_000 } }));
    assert.equal(wholeCharge.code, Code.InvalidArgument);
    assert.equal(wholeCharge.rawMessage, "schedule.card_fee_bps: must be 0..2000");
    // A fee above the largest tip is a typo (KES 30 typed as 3,000,000 would take every card tip whole); a currency
    // no tip is in would price nothing.
    const typos: Array<[Partial<typeof request.schedule>, string]> = [
      [{ cardFeeFixedMinor: 25_000_001n }, "schedule.card_fee_fixed_minor: must be at most 25000000 minor units, the largest tip in KES"],
      [{ platformFeeCapMinor: 2n ** 62n }, "schedule.platform_fee_cap_minor: must be at most 25000000 minor units, the largest tip in KES"],
      [{ mpesaB2cBands: [...mpesaB2cBands.slice(0, -1), { ...mpesaB2cBands.at(-1)!, feeMinor: 2n ** 60n }] }, "schedule.mpesa_b2c_bands[4]: fee must be at most 25000000 minor units, the largest tip in KES"],
      [{ currency: "XAU" }, "schedule.currency: unsupported currency XAU (supported: KES, UGX, TZS, RWF, USD, EUR, GBP)"],
    ];
    for (const [typo, message] of typos) {
      const refused = await failure(steppedUp.createFeeSchedule({ idempotencyKey: `fees-${randomUUID()}`, schedule: { ...request.schedule, ...typo } }));
      assert.deepEqual([refused.code, refused.rawMessage], [Code.InvalidArgument, message]);
    }
    // Audited once, in wallet's outbox with the version.
    const { rows } = await t.db.pool.query("SELECT payload FROM wallet.outbox WHERE subject = 'ttip.wallet.admin_action' ORDER BY seq");
    const audited = rows.map((r) => fromBinary(WalletAdminActionTakenSchema, r.payload).action!).filter((a) => a.action === AuditAction.FEE_SCHEDULE_CREATED);
    assert.equal(audited.length, 1, "the retry recorded nothing");
    assert.equal(audited[0].actorUserId, adminId);
    assert.equal(audited[0].target, "fee_schedule:KES:v2");
    assert.match(audited[0].detail, /^v2 from .*: platform 300 bps \(min 0, cap 20000\), card 290 bps/);
    // Announced once (for payment's copy of the schedules), in the same transaction; the copy loads every version.
    const announced = await t.db.pool.query("SELECT payload FROM wallet.outbox WHERE subject = 'ttip.wallet.fee_schedule_created' ORDER BY seq");
    const events = announced.rows.map((r) => fromBinary(FeeScheduleCreatedSchema, r.payload)).filter((e) => e.currency === "KES");
    assert.deepEqual(events.map((e) => [e.version, e.meta!.producer]), [[2, "wallet"]], "the retry announced nothing");
    assert.equal(events[0].effectiveFrom!.seconds, created.schedule!.effectiveFrom!.seconds);
    const { schedules: copy } = await internal.loadFeeSchedules({ currency: "KES" });
    assert.deepEqual(copy.map((s) => [s.version, s.platformFeeBps]), [[1, 500], [2, 300]]);
    const q2 = await t.client(WalletService).quoteFees({ amount: kesMinor(10_000n), rail: PaymentRail.MPESA, workerId: w.workerId });
    assert.equal(q2.quote!.feeScheduleVersion, 2);
    assert.equal(q2.quote!.platformFee!.amountMinor, 300n);
    const gap = await failure(admin.createFeeSchedule({ idempotencyKey: `fees-${randomUUID()}`, schedule: { currency: "KES", platformFeeCapMinor: 1n, mpesaB2cBands: [{ minMinor: 100n, maxMinor: 200n }, { minMinor: 300n, maxMinor: 400n }] } }));
    assert.equal(gap.code, Code.InvalidArgument);
    assert.match(gap.rawMessage, /contiguous/);
    assert.equal(await codeOf(t.client(WalletService).quoteFees({ amount: kesMinor(0n), rail: PaymentRail.MPESA, workerId: w.workerId })), "InvalidArgument");
  });

  test("limits of a worker with no wallet yet: nothing used, and asking creates no account", async () => {
    const workerId = randomUUID();
    const { tier, limits } = await t.client(WalletService, { subject: workerId, roles: ["worker"] }).getWithdrawalLimits({ currency: "KES" });
    assert.equal(tier, UserTier.BASIC);
    assert.equal(limits.find((l) => l.kind === LimitKind.DAILY)!.remaining!.amountMinor, 5_000_000n);
    // M-Pesa's own limits are the runtime's, the numbers the apps and the other services check too.
    assert.equal(limits.find((l) => l.kind === LimitKind.MPESA_PER_TRANSACTION)!.limit!.amountMinor, MPESA_LIMITS.perTransactionMinor);
    assert.equal(limits.find((l) => l.kind === LimitKind.MPESA_DAILY)!.limit!.amountMinor, MPESA_LIMITS.dailyMinor);
    assert.equal((await admin.listAccounts({ ownerId: workerId })).accounts.length, 0);
  });

  test("settlement mode defaults to pass-through and can be chosen per worker", async () => {
    const workerId = randomUUID();
    assert.equal((await internal.getSettlementMode({ ownerKind: OwnerKind.WORKER, ownerId: workerId })).mode, SettlementMode.PASS_THROUGH);
    await admin.setSettlementMode({ ownerKind: OwnerKind.WORKER, ownerId: workerId, mode: SettlementMode.WALLET });
    assert.equal((await internal.getSettlementMode({ ownerKind: OwnerKind.WORKER, ownerId: workerId })).mode, SettlementMode.WALLET);
  });

  test("a posting's commit wakes wallet's outbox relay (no wait for its next poll)", async () => {
    const told: string[] = [];
    const stop = onOutboxCommitted((schema) => told.push(schema));
    try {
      const w = await newWorker();
      await tip(w.accountId, 1_000n, 0n);
      assert.ok(told.includes("wallet"), `told: ${told.join(", ")}`);
    } finally {
      stop();
    }
  });

  test("wallet.credited reaches the bus through the outbox", async () => {
    const w = await newWorker();
    const { entry } = await tip(w.accountId, 4_200n, 200n);
    let subscription: { stop(): Promise<void> } | undefined;
    const got = new Promise<ReturnType<typeof decodeEvent<typeof WalletCreditedSchema>>>((resolve) => {
      void t.ctx.bus.subscribe({
        durable: `test-credited-${w.workerId.slice(0, 8)}`,
        subject: "ttip.wallet.credited",
        handler: async (m) => {
          const e = decodeEvent(WalletCreditedSchema, m);
          if (e.entryId === entry!.entryId) resolve(e);
        },
      }).then((s) => (subscription = s));
    });
    const event = await got;
    await subscription?.stop();
    assert.equal(event.ownerId, w.workerId);
    assert.equal(event.amount!.amountMinor, 4_000n);
    assert.equal(event.balanceAfter!.amountMinor, 4_000n);
    assert.equal(event.balanceAfter!.currency, "KES");
    assert.equal(event.accountId, w.accountId);
    assert.equal(event.causeId, entry!.cause!.cause.value);
    assert.equal(event.meta!.producer, "wallet");
  });

  test("an event's owner and balance after, encoded by the posting statement, are the bytes protobuf encodes", async () => {
    // Inlined into the statement (not parsed and planned again on every posting).
    const { rows: plan } = await t.db.pool.query(`EXPLAIN (VERBOSE, COSTS OFF) SELECT wallet.movement_event_tail(owner_id, balance_minor, currency) FROM wallet.accounts`);
    assert.doesNotMatch(plan.map((r) => r["QUERY PLAN"]).join("\n"), /movement_event_tail/);
    const balances = [0n, 1n, -1n, 127n, 128n, 300n, -300n, 16_384n, 2n ** 31n, -(2n ** 31n), 2n ** 62n, 2n ** 63n - 1n, -(2n ** 63n)];
    for (let i = 0; i < 40; i++) balances.push(BigInt.asIntN(64, BigInt(`0x${randomUUID().replace(/-/g, "").slice(0, 16)}`)));
    // A length of 128 bytes or more takes two bytes (the statement writes shorter ones itself).
    const owners = ["", randomUUID(), "wörker-ñ-✓", "o".repeat(127), "o".repeat(128), "✓".repeat(70)];
    for (const ownerId of owners) {
      for (const amountMinor of balances) {
        const { rows } = await t.db.pool.query<{ tail: Buffer }>(`SELECT wallet.movement_event_tail($1, $2, $3) AS tail`, [ownerId, amountMinor.toString(), "KES"]);
        const decoded = fromBinary(WalletCreditedSchema, rows[0].tail);
        assert.equal(decoded.ownerId, ownerId);
        assert.equal(decoded.balanceAfter!.amountMinor, amountMinor, `balance ${amountMinor}`);
        assert.equal(decoded.balanceAfter!.currency, "KES");
        // Where protobuf writes every field (no zero or empty default left out), the bytes are the same.
        if (ownerId && amountMinor !== 0n) {
          const expected = toBinary(WalletCreditedSchema, create(WalletCreditedSchema, { ownerId, balanceAfter: { amountMinor, currency: "KES" } }));
          assert.deepEqual(new Uint8Array(rows[0].tail), expected, `balance ${amountMinor}`);
        }
      }
    }
  });
});
