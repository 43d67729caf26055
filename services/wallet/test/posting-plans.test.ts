// The plans PostgreSQL keeps for wallet's posting statements (PostEntry's, locking ahead or not,
// and PostEntries' for a batch), on a wallet.accounts of thousands of accounts whose statistics
// were taken when it held a few dozen: each reads accounts through their primary key and reads
// no ledger table whole. The statements name the lines' account ids in each read of accounts for
// this (ledger.ts); a plan that read accounts whole would read every worker's for every tip.
// (While accounts fit in a page or two a whole read is cheaper, measured on 52 accounts: 38
// blocks per entry of a batch against 43, and PostgreSQL plans one there; a connection keeps such
// a plan until the table is analyzed again, which its balance updates soon make autovacuum do.)
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { AccountKind, EntryCauseSchema, OwnerKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { migrate } from "@ttip/runtime";
import { createTestDatabase, keptPlans, type KeptPlan, type PlanNode, type TestDatabase } from "@ttip/runtime/testing";
import { ensureAccount, type EntryInput, postEntry } from "../src/ledger.js";
import { postEntries } from "../src/post-entries.js";

/** wallet's tables a posting statement reads. */
const LEDGER_TABLES = new Set(["accounts", "entries", "postings"]);

const subtree = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(subtree)];

/**
 * The window functions of a plan run again for each row of a nested loop's outer side: those in
 * the loop's inner side (its second child), which the loop reads anew for every outer row.
 */
function windowsRerun(plan: PlanNode): string[] {
  return subtree(plan)
    .filter((n) => n["Node Type"] === "Nested Loop" && n.Plans?.[1])
    .flatMap((loop) => subtree(loop.Plans![1]).filter((n) => n["Node Type"] === "WindowAgg"))
    .map((n) => `${n["Node Type"]} under ${(n.Plans ?? []).map((c) => c["Node Type"]).join(", ")}`);
}

describe("wallet's posting statements on a grown wallet.accounts, by the generic plans connections keep", () => {
  let db: TestDatabase;
  let clearing: string;
  let fees: string;
  const workers: string[] = [];
  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, "wallet", fileURLToPath(new URL("../migrations", import.meta.url)));
    clearing = (await ensureAccount(db.pool, AccountKind.MPESA_CLEARING, OwnerKind.PLATFORM, "", "KES")).account_id;
    fees = (await ensureAccount(db.pool, AccountKind.PLATFORM_FEES, OwnerKind.PLATFORM, "", "KES")).account_id;
    for (let i = 0; i < 30; i++) workers.push((await ensureAccount(db.pool, AccountKind.WORKER_WALLET, OwnerKind.WORKER, randomUUID(), "KES")).account_id);
    // Statistics of a young table (32 accounts), then grown to thousands without a new ANALYZE.
    await db.pool.query("ANALYZE wallet.accounts");
    await db.pool.query(
      `INSERT INTO wallet.accounts (account_id, kind, owner_kind, owner_id, currency, may_go_negative)
       SELECT gen_random_uuid(), $1, $2, 'grown-' || i, 'KES', false FROM generate_series(1, 5000) i`,
      [AccountKind.WORKER_WALLET, OwnerKind.WORKER],
    );
    // The clearing and fee accounts known as system ones (the first posting tells): a tip's entry then has one owner.
    await postEntry(db.pool, tip(workers[0]));
  });
  after(async () => {
    await db?.drop();
  });

  const tip = (worker: string): EntryInput => ({
    idempotencyKey: `mpesa:${randomUUID()}`,
    cause: create(EntryCauseSchema, { cause: { case: "mpesaReceipt", value: randomUUID().slice(0, 10) } }),
    postings: [
      { accountId: clearing, amountMinor: -10_000n, currency: "KES", memo: "M-Pesa" },
      { accountId: worker, amountMinor: 9_500n, currency: "KES", memo: "tip" },
      { accountId: fees, amountMinor: 500n, currency: "KES", memo: "platform fee" },
    ],
    description: "Tip by M-Pesa",
  });

  /** Asserts each statement reads wallet.accounts, and every ledger table only through an index. */
  function byIndex(plans: KeptPlan[], statements: number): void {
    assert.equal(plans.length, statements);
    for (const { statement, reads } of plans) {
      assert.ok(reads.some((n) => n["Relation Name"] === "accounts"), `${statement}: reads wallet.accounts`);
      const whole = reads.filter((n) => !/^(Index (Only )?Scan|Bitmap Heap Scan)$/.test(n["Node Type"]));
      assert.deepEqual(whole.map((n) => `${n["Node Type"]} on ${n["Relation Name"]}`), [], `${statement}: ${reads.map((n) => `${n["Node Type"]} ${n["Relation Name"]}`)}`);
    }
  }

  test("a tip's entry (one owned account: no lock taken ahead)", async () => {
    byIndex(await keptPlans(db.pool, LEDGER_TABLES, (q) => postEntry(q, tip(workers[1]))), 1);
  });

  test("an entry between two owned accounts (their locks taken ahead, in id order)", async () => {
    const transfer: EntryInput = {
      idempotencyKey: `adjust:${randomUUID()}`,
      cause: create(EntryCauseSchema, { cause: { case: "adjustmentTicket", value: randomUUID().slice(0, 8) } }),
      postings: [
        { accountId: workers[0], amountMinor: -100n, currency: "KES" },
        { accountId: workers[2], amountMinor: 100n, currency: "KES" },
      ],
    };
    byIndex(await keptPlans(db.pool, LEDGER_TABLES, (q) => postEntry(q, transfer)), 1);
  });

  test("a batch of tips' entries (PostEntries' one statement)", async () => {
    const outcomes = await keptPlans(db.pool, LEDGER_TABLES, async (q) => {
      const posted = await postEntries(q, [tip(workers[3]), tip(workers[4]), tip(workers[3])]);
      assert.deepEqual(posted.map((o) => "posted" in o), [true, true, true]);
    });
    byIndex(outcomes, 1);
  });

  test("a batch's running balances and its entries' sequence numbers are computed once, not again for each account or entry", async () => {
    // The balance steps (window sums over the batch's lines) and the ranks that match entries to
    // sequence numbers are read by nested loops, once per account moved and once per entry: as
    // subqueries there, each was sorted and summed again for every row, a batch's work squared.
    const plans = await keptPlans(db.pool, LEDGER_TABLES, async (q) => {
      const posted = await postEntries(q, [tip(workers[5]), tip(workers[6]), tip(workers[7])]);
      assert.deepEqual(posted.map((o) => "posted" in o), [true, true, true]);
    });
    assert.equal(plans.length, 1);
    assert.deepEqual(windowsRerun(plans[0].plan), []);
  });
});
