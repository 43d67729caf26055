// Workers' consents to partner keys, and the partner reads they gate: a key
// reads a worker's payouts (from payment) and statements (from wallet) only
// while the worker's consent with that scope stands, checked on every call.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { ConsentScope } from "@ttip/proto/ttip/auth/v1/partner_pb.js";
import { AccountKind, EntryCauseSchema, OwnerKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { StatementFormat, WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { payment } from "@ttip/payment";
import { wallet } from "@ttip/wallet";
import { nairobiMonthOf } from "@ttip/runtime";
import { failure } from "@ttip/runtime/testing";
import { startPartnerHarness, type PartnerHarness, type PartnerKey } from "./partner-harness.js";

describe("partner consents and consent-gated reads", () => {
  let h: PartnerHarness;
  let bookings: PartnerKey;
  let worker: string;
  let stranger: string;
  // Statements are Nairobi months: in UTC's last three hours of a month, Nairobi is in the next one.
  // The tip's month, read from its posting: a month taken when the file loads was the month before
  // when the run crossed midnight in Nairobi (21:00 UTC) before the tip was posted.
  let month: { year: number; month: number; currency: string; format: StatementFormat };

  /** A payout row as payment keeps it (the fixture: how it got there is payment's own tests' business). */
  const addPayout = async (workerId: string, amountMinor: bigint) => {
    const id = randomUUID();
    await h.db.pool.query(
      `INSERT INTO payment.payouts (payout_id, worker_id, idempotency_key, currency, amount_minor, phone, phone_masked, status, callback_token, next_check_at, mpesa_receipt, completed_at)
       VALUES ($1, $2, $3, 'KES', $4, '254712345678', '2547******78', 'succeeded', $5, now(), $6, now())`,
      [id, workerId, `fixture-${id}`, amountMinor, randomUUID(), `SIM${id.slice(0, 8).toUpperCase()}`],
    );
    return id;
  };

  before(async () => {
    h = await startPartnerHarness({ with: [wallet, payment] });
    bookings = await h.issueKey("Kilimani Bookings", ["payouts:read", "statements:read"]);
    worker = await h.addWorker();
    stranger = await h.addWorker();
    // A tip credited to the worker's wallet, through wallet's own ledger.
    const internal = createClient(WalletInternalService, h.ctx.peers("wallet"));
    const account = (await internal.ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId: worker, currency: "KES" })).account!;
    const clearing = (await internal.ensureAccount({ kind: AccountKind.MPESA_CLEARING, ownerKind: OwnerKind.PLATFORM, currency: "KES" })).account!;
    await internal.postEntry({
      idempotencyKey: `mpesa:${randomUUID()}`,
      cause: create(EntryCauseSchema, { cause: { case: "mpesaReceipt", value: "RKT0000009" } }),
      postings: [
        { accountId: clearing.accountId, amount: { amountMinor: -25_000n, currency: "KES" } },
        { accountId: account.accountId, amount: { amountMinor: 25_000n, currency: "KES" } },
      ],
    });
    const { rows } = await h.db.pool.query<{ posted_at: Date }>("SELECT posted_at FROM wallet.postings WHERE account_id = $1", [account.accountId]);
    month = { ...nairobiMonthOf(rows[0].posted_at), currency: "KES", format: StatementFormat.ROWS };
  });

  after(async () => {
    await h.close();
  });

  test("without the worker's consent a key's reads are refused, naming the consent", async () => {
    await addPayout(worker, 10_000n);
    assert.deepEqual(await failure(h.partner(bookings).listWorkerPayouts({ workerId: worker })), {
      code: Code.PermissionDenied,
      message: `consent CONSENT_SCOPE_PAYOUTS missing: worker ${worker} has not granted it to this key (or has revoked it)`,
    });
    // (Each call differs in some byte: the same signed request twice within a second is a replay.)
    assert.deepEqual(await failure(h.partner(bookings).getWorkerStatement({ workerId: worker, ...month, format: StatementFormat.CSV })), {
      code: Code.PermissionDenied,
      message: `consent CONSENT_SCOPE_STATEMENTS missing: worker ${worker} has not granted it to this key (or has revoked it)`,
    });
  });

  test("a peer out of reach is told as UNAVAILABLE without its address; a peer's refusal of the request is told as it is", async () => {
    // A worker of its own: the other tests' consents stay as they are.
    const consenting = await h.addWorker();
    await h.consents(consenting).grantPartnerConsent({ keyId: bookings.keyId, scopes: [ConsentScope.PAYOUTS, ConsentScope.STATEMENTS] });
    const payment = h.peerAt("payment", "http://127.0.0.1:1");
    let refused: Awaited<ReturnType<typeof failure>>;
    try {
      refused = await failure(h.partner(bookings).listWorkerPayouts({ workerId: consenting }));
    } finally {
      h.peerAt("payment", payment!);
    }
    // Before, the transport's own words reached the partner: "connect ECONNREFUSED 127.0.0.1:1".
    assert.deepEqual(refused, { code: Code.Unavailable, message: "the worker's payouts cannot be read right now; retry shortly" });
    const noWallet = await failure(h.partner(bookings).getWorkerStatement({ workerId: consenting, ...month }));
    assert.deepEqual(noWallet, { code: Code.NotFound, message: "currency: you have no KES wallet" });
  });

  test("a statement request with several wrong fields is refused naming each of them, not the first and '1 more violation'", async () => {
    const refused = await failure(h.partner(bookings).getWorkerStatement({ workerId: "not-a-uuid", year: 1999, month: 13, currency: "KES" }));
    assert.equal(refused.code, Code.InvalidArgument);
    assert.equal(
      refused.message,
      "worker_id: must be a valid UUID [string.uuid]; year: must be greater than or equal to 2024 and less than or equal to 2100 [int32.gte_lte]; " +
        "month: must be greater than or equal to 1 and less than or equal to 12 [int32.gte_lte]; format: must not be in list [0] [enum.not_in]",
    );
  });

  test("with it, the key reads that worker's payouts and statement, and only that worker's; each scope gates its own read", async () => {
    const theirs = await addPayout(stranger, 7_000n);
    const granted = await h.consents(worker).grantPartnerConsent({ keyId: bookings.keyId, scopes: [ConsentScope.PAYOUTS] });
    assert.equal(granted.consent!.partnerName, "Kilimani Bookings");
    assert.deepEqual(granted.consent!.scopes, [ConsentScope.PAYOUTS]);

    const payouts = await h.partner(bookings).listWorkerPayouts({ workerId: worker });
    assert.equal(payouts.payouts.length, 1);
    assert.equal(payouts.payouts[0].workerId, worker);
    assert.equal(payouts.payouts[0].amount!.amountMinor, 10_000n);
    assert.ok(!payouts.payouts.some((p) => p.payoutId === theirs));
    // Payouts only: the statement still needs its own consent.
    assert.match((await failure(h.partner(bookings).getWorkerStatement({ workerId: worker, ...month }))).message, /^consent CONSENT_SCOPE_STATEMENTS missing/);
    // Another worker's, never consented.
    assert.equal((await failure(h.partner(bookings).listWorkerPayouts({ workerId: stranger }))).code, Code.PermissionDenied);

    const widened = await h.consents(worker).grantPartnerConsent({ keyId: bookings.keyId, scopes: [ConsentScope.STATEMENTS] });
    assert.deepEqual(widened.consent!.scopes, [ConsentScope.PAYOUTS, ConsentScope.STATEMENTS]);
    const statement = await h.partner(bookings).getWorkerStatement({ workerId: worker, ...month });
    assert.equal(statement.statement!.closingBalance!.amountMinor, 25_000n);
    assert.equal(statement.statement!.rows.length, 1);
  });

  test("revocation is effective for the very next call", async () => {
    await h.consents(worker).grantPartnerConsent({ keyId: bookings.keyId, scopes: [ConsentScope.PAYOUTS, ConsentScope.STATEMENTS] });
    assert.equal((await h.partner(bookings).listWorkerPayouts({ workerId: worker, page: { pageSize: 5 } })).payouts.length >= 1, true);
    const revoked = await h.consents(worker).revokePartnerConsent({ keyId: bookings.keyId });
    assert.ok(revoked.consent!.revokedAt);
    assert.equal((await failure(h.partner(bookings).listWorkerPayouts({ workerId: worker, page: { pageSize: 6 } }))).code, Code.PermissionDenied);
    assert.equal((await failure(h.partner(bookings).getWorkerStatement({ workerId: worker, ...month, year: month.year - 1 }))).code, Code.PermissionDenied);
    // Granting again starts from the scopes named now, not the old ones.
    const again = await h.consents(worker).grantPartnerConsent({ keyId: bookings.keyId, scopes: [ConsentScope.STATEMENTS] });
    assert.deepEqual(again.consent!.scopes, [ConsentScope.STATEMENTS]);
    assert.equal(again.consent!.revokedAt, undefined);
    assert.equal((await failure(h.partner(bookings).listWorkerPayouts({ workerId: worker, page: { pageSize: 7 } }))).code, Code.PermissionDenied);
    const audit = await h.db.pool.query("SELECT count(*)::int AS n FROM auth.audit_events WHERE user_id = $1 AND detail LIKE $2", [worker, `key ${bookings.keyId}%`]);
    assert.ok(audit.rows[0].n >= 4, "grants and the revocation are audited");
  });

  test("a worker consents only to a live key, lists their consents, and withdraws only what they granted", async () => {
    assert.deepEqual(await failure(h.consents(worker).grantPartnerConsent({ keyId: randomUUID(), scopes: [ConsentScope.PAYOUTS] })).then((f) => f.code), Code.NotFound);
    assert.equal((await failure(h.consents(stranger).revokePartnerConsent({ keyId: bookings.keyId }))).code, Code.NotFound);
    const bad = await failure(h.consents(worker).grantPartnerConsent({ keyId: bookings.keyId, scopes: [] }));
    assert.equal(bad.code, Code.InvalidArgument);
    assert.match(bad.message, /scopes/);
    const list = await h.consents(worker).listPartnerConsents({});
    assert.deepEqual(list.consents.map((c) => [c.keyId, c.partnerName]), [[bookings.keyId, "Kilimani Bookings"]]);
    assert.equal((await h.consents(stranger).listPartnerConsents({})).consents.length, 0);
  });

  test("the key's scopes still apply: without payouts:read the gateway refuses before any consent is looked at", async () => {
    const hooksOnly = await h.issueKey("Hooks Only", ["webhooks:read"]);
    await h.consents(worker).grantPartnerConsent({ keyId: hooksOnly.keyId, scopes: [ConsentScope.PAYOUTS] });
    assert.deepEqual(await failure(h.partner(hooksOnly).listWorkerPayouts({ workerId: worker })), {
      code: Code.PermissionDenied,
      message: "missing scope: ttip.auth.v1.PartnerService/ListWorkerPayouts needs the scope payouts:read, which this key does not have",
    });
  });
});
