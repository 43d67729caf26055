// wallet's handler rules in the fast tier: the module's handlers called through a
// router transport (no sockets), with the server's own interceptors, on a real
// database. Concurrency, events and statements stay in ledger.test.ts.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { AccountKind, EntryCauseSchema, LimitKind, OwnerKind, PaymentRail, WithdrawalLimitSchema } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { StatementFormat, WalletAdminService, WalletInternalService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { violationsOf, type Role } from "@ttip/runtime";
import { conflictingKeyOf, type InProcessService, kesMinor, reasonOf, refusal, startInProcessService } from "@ttip/runtime/testing";
import { createWalletModule } from "../src/index.js";
import { ENSURE_ACCOUNT_LOCK_TIMEOUT_MS } from "../src/ledger.js";

const tipCause = () => create(EntryCauseSchema, { cause: { case: "tipAttemptId", value: randomUUID() } });
const admin = { subject: randomUUID(), roles: ["admin"] as Role[], stepUp: true };
const fieldsOf = (err: Parameters<typeof violationsOf>[0]) => violationsOf(err).map((v) => v.field);

describe("wallet rules, in process", () => {
  let s: InProcessService;
  let clearing: string;
  const internal = () => s.client(WalletInternalService);

  before(async () => {
    s = await startInProcessService(createWalletModule({ env: {} }));
    clearing = (await internal().ensureAccount({ kind: AccountKind.MPESA_CLEARING, ownerKind: OwnerKind.PLATFORM, currency: "KES" })).account!.accountId;
  });
  after(() => s?.close());

  async function workerWith(minor: bigint) {
    const workerId = randomUUID();
    const { account } = await internal().ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: workerId, currency: "KES" });
    if (minor > 0n) await internal().postEntry(credit(account!.accountId, minor));
    return { workerId, accountId: account!.accountId };
  }
  function credit(accountId: string, minor: bigint, idempotencyKey = `mpesa:${randomUUID()}`) {
    return { idempotencyKey, cause: tipCause(), postings: [{ accountId: clearing, amount: kesMinor(-minor) }, { accountId, amount: kesMinor(minor) }], description: "Tip by M-Pesa" };
  }
  const ledgerOf = async (accountId: string) => (await s.client(WalletAdminService, admin).getAccount({ accountId })).balance!.ledger!.amountMinor;

  test("EnsureAccount waiting for another transaction making the same account is answered ABORTED after a bounded wait, not held while it stays open", async () => {
    const workerId = randomUUID();
    const holder = await s.db.pool.connect();
    try {
      // Another transaction has made the worker's wallet and not committed (say, one that hangs).
      await holder.query("BEGIN");
      await holder.query(
        "INSERT INTO wallet.accounts (account_id, kind, owner_kind, owner_id, currency, may_go_negative) VALUES ($1, $2, $3, $4, 'KES', false)",
        [randomUUID(), AccountKind.WORKER_WALLET, OwnerKind.WORKER, workerId],
      );
      // A caller without a deadline (as payment calls it); the cap only ends the test when the wait is unbounded.
      const call = refusal(internal().ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: workerId, currency: "KES" }));
      const cap = new Promise<"still waiting">((r) => setTimeout(() => r("still waiting"), 15 * ENSURE_ACCOUNT_LOCK_TIMEOUT_MS).unref());
      const answer = await Promise.race([call, cap]);
      assert.notEqual(answer, "still waiting", "the call was held while the other transaction stayed open");
      assert.equal((answer as Awaited<typeof call>).code, Code.Aborted);
    } finally {
      await holder.query("ROLLBACK").catch(() => undefined);
      holder.release();
    }
    // Once the other transaction is gone, the same call makes the account.
    const { account } = await internal().ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: workerId, currency: "KES" });
    assert.equal(account!.ownerId, workerId);
  });

  test("bad input is refused as INVALID_ARGUMENT naming the field, and creates nothing", async () => {
    const workerId = randomUUID();
    const noOwner = await refusal(internal().ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, currency: "KES" }));
    assert.equal(noOwner.code, Code.InvalidArgument);
    assert.deepEqual(fieldsOf(noOwner), ["owner_id"]);
    const owned = await refusal(internal().ensureAccount({ kind: AccountKind.PLATFORM_FEES, ownerKind: OwnerKind.WORKER, ownerId: workerId, currency: "KES" }));
    assert.deepEqual(fieldsOf(owned), ["owner_kind"]);
    const shortKey = await refusal(internal().postEntry({ ...credit(clearing, 100n), idempotencyKey: "short" }));
    assert.equal(shortKey.code, Code.InvalidArgument);
    assert.ok(fieldsOf(shortKey).includes("idempotency_key"), `violations: ${fieldsOf(shortKey)}`);
    const month = await refusal(s.client(WalletService, { subject: workerId, roles: ["worker"] }).getStatement({ year: 2026, month: 13, currency: "KES", format: StatementFormat.CSV }));
    assert.equal(month.code, Code.InvalidArgument);
    assert.deepEqual(fieldsOf(month), ["month"]);
    const zero = await refusal(s.client(WalletService).quoteFees({ amount: kesMinor(0n), rail: PaymentRail.MPESA, workerId }));
    assert.equal(zero.code, Code.InvalidArgument);
    // A message-level rule of the contract: its violation names the field in its message, with no field path.
    assert.deepEqual(violationsOf(zero).map((v) => [v.ruleId, v.message]), [["quote_fees.amount_positive", "amount must be greater than zero"]]);
    assert.equal((await s.client(WalletAdminService, admin).listAccounts({ ownerId: workerId })).accounts.length, 0);
  });

  test("access by role: signed out, a customer and a worker at the admin service are refused before the handler; a fee schedule needs the step-up", async () => {
    const anonymous = await refusal(s.client(WalletService).getBalance({}));
    assert.equal(anonymous.code, Code.Unauthenticated);
    const customer = await refusal(s.client(WalletService, { subject: randomUUID(), roles: ["customer"] }).quoteWithdrawalFee({ amount: kesMinor(150_000n) }));
    assert.equal(customer.code, Code.PermissionDenied);
    const worker = await refusal(s.client(WalletAdminService, { subject: randomUUID(), roles: ["worker"] }).getTrialBalance({}));
    assert.equal(worker.code, Code.PermissionDenied);
    const schedule = { idempotencyKey: `fees-${randomUUID()}`, schedule: { currency: "KES", platformFeeBps: 100, platformFeeCapMinor: 20_000n, cardFeeBps: 290 } };
    const noStepUp = await refusal(s.client(WalletAdminService, { subject: admin.subject, roles: ["admin"] }).createFeeSchedule(schedule));
    assert.equal(noStepUp.code, Code.PermissionDenied);
    assert.match(noStepUp.rawMessage, /needs the admin's device step-up/);
    const { schedules } = await s.client(WalletAdminService, admin).listFeeSchedules({ currency: "KES" });
    assert.equal(schedules.length, 1, "the refused schedule was not created");
  });

  test("two fee schedules for one currency created at once: both made, one version after the other, never INTERNAL", async () => {
    const create = () => s.client(WalletAdminService, admin).createFeeSchedule({ idempotencyKey: `fees-${randomUUID()}`, schedule: { currency: "GBP", platformFeeBps: 100, platformFeeCapMinor: 20_000n, cardFeeBps: 290 } });
    // Before, both took the highest version plus one, and the second insert's key answered INTERNAL.
    const made = await Promise.all([create(), create(), create()]);
    const versions = made.map((m) => m.schedule!.version).sort((a, b) => a - b);
    assert.deepEqual(versions, [versions[0], versions[0] + 1, versions[0] + 2]);
  });

  test("an entry's key: another request under it is ALREADY_EXISTS naming the key; the same request answers the first entry; money moves once", async () => {
    const w = await workerWith(0n);
    const first = await internal().postEntry(credit(w.accountId, 5_000n));
    const conflict = await refusal(internal().postEntry(credit(w.accountId, 5_000n, first.entry!.idempotencyKey)));
    assert.equal(conflict.code, Code.AlreadyExists);
    assert.equal(conflictingKeyOf(conflict), first.entry!.idempotencyKey);
    const again = await internal().postEntry({ idempotencyKey: first.entry!.idempotencyKey, cause: first.entry!.cause, postings: first.entry!.postings, description: first.entry!.description });
    assert.equal(again.created, false);
    assert.equal(again.entry!.entryId, first.entry!.entryId);
    assert.equal(await ledgerOf(w.accountId), 5_000n);
  });

  test("a hold's key: the same hold again is the same hold; another under its key is ALREADY_EXISTS naming the key; nothing more is held", async () => {
    const w = await workerWith(100_000n);
    const payoutId = randomUUID();
    const request = { accountId: w.accountId, amount: kesMinor(40_000n), payoutId, idempotencyKey: `hold-${payoutId}` };
    const placed = await internal().placeHold(request);
    assert.equal((await internal().placeHold(request)).hold!.holdId, placed.hold!.holdId);
    const conflict = await refusal(internal().placeHold({ ...request, amount: kesMinor(1_000n) }));
    assert.equal(conflict.code, Code.AlreadyExists);
    assert.equal(conflictingKeyOf(conflict), request.idempotencyKey);
    const samePayout = await refusal(internal().placeHold({ ...request, idempotencyKey: `other-${payoutId}` }));
    assert.equal(samePayout.code, Code.AlreadyExists);
    assert.equal(conflictingKeyOf(samePayout), undefined, "a second hold for one payout is not a key conflict");
    const { balance } = await s.client(WalletAdminService, admin).getAccount({ accountId: w.accountId });
    assert.equal(balance!.held!.amountMinor, 40_000n);
  });

  test("one hold key sent at once for two accounts: one hold, the other ALREADY_EXISTS naming the key, never INTERNAL", async () => {
    const [a, b] = [await workerWith(100_000n), await workerWith(100_000n)];
    for (let i = 0; i < 8; i++) {
      const payoutId = randomUUID();
      const idempotencyKey = `hold-${payoutId}`;
      const results = await Promise.allSettled([a, b].map((w) => internal().placeHold({ accountId: w.accountId, amount: kesMinor(1_000n), payoutId, idempotencyKey })));
      // Before, both passed the look for an earlier hold (each under its own account's lock) and the second insert's
      // unique key answered INTERNAL.
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
      const refused = ConnectError.from((results.find((r) => r.status === "rejected") as PromiseRejectedResult).reason);
      assert.equal(refused.code, Code.AlreadyExists, refused.rawMessage);
      assert.equal(conflictingKeyOf(refused), idempotencyKey);
    }
  });

  test("domain refusals: insufficient funds, the per-withdrawal limit, an overdrawing entry, an unknown hold, a second reversal", async () => {
    const w = await workerWith(3_000_000n);
    const hold = (minor: bigint) => internal().placeHold({ accountId: w.accountId, amount: kesMinor(minor), payoutId: randomUUID(), idempotencyKey: `hold-${randomUUID()}` });
    const tooMuch = await refusal(hold(3_000_100n));
    assert.equal(tooMuch.code, Code.FailedPrecondition);
    assert.equal(reasonOf(tooMuch), "INSUFFICIENT_FUNDS");
    assert.match(tooMuch.rawMessage, /available KES 30000\.00/);
    const perTx = await refusal(hold(2_000_100n));
    assert.equal(perTx.code, Code.ResourceExhausted);
    assert.equal(reasonOf(perTx), "LIMIT_EXCEEDED");
    assert.equal(perTx.findDetails(WithdrawalLimitSchema)[0].kind, LimitKind.PER_TRANSACTION);
    const overdraw = await refusal(internal().postEntry({ idempotencyKey: `k-${randomUUID()}`, cause: tipCause(), postings: [{ accountId: w.accountId, amount: kesMinor(-3_000_001n) }, { accountId: clearing, amount: kesMinor(3_000_001n) }] }));
    assert.equal(reasonOf(overdraw), "INSUFFICIENT_FUNDS");
    const unknownHold = await refusal(internal().releaseHold({ holdId: randomUUID() }));
    assert.equal(unknownHold.code, Code.NotFound);
    assert.equal(await ledgerOf(w.accountId), 3_000_000n, "no refusal moved money");

    const { entry } = await internal().postEntry(credit(w.accountId, 1_000n));
    await s.client(WalletAdminService, admin).reverseEntry({ entryId: entry!.entryId, idempotencyKey: `rev-${entry!.entryId}`, reason: "refund" });
    const twice = await refusal(s.client(WalletAdminService, admin).reverseEntry({ entryId: entry!.entryId, idempotencyKey: `rev2-${entry!.entryId}`, reason: "again" }));
    assert.equal(twice.code, Code.FailedPrecondition);
    assert.equal(reasonOf(twice), "ALREADY_REVERSED");
    assert.equal(await ledgerOf(w.accountId), 3_000_000n);
  });
});
