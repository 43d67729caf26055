import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { create, fromBinary } from "@bufbuild/protobuf";
import type { Money } from "@ttip/proto/ttip/common/v1/money_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import { WalletCreditedSchema, WalletDebitedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { AccountKind, type EntryCause, EntryCauseSchema, type FxConversion, FxConversionSchema, OwnerKind, type JournalEntry } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { type PostEntryResult, PostEntryResultSchema } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { money, subjectOf, type Queryable } from "@ttip/runtime";
import { eventually } from "@ttip/runtime/testing";
import { postEntry } from "../src/ledger.js";
import { postEntries } from "../src/post-entries.js";
import { type LedgerFixture, startLedger } from "./ledger-fixture.js";

/** A PostEntryRequest as these tests build it. */
interface EntryRequest {
  idempotencyKey: string;
  cause: EntryCause;
  postings: { accountId: string; amount: Money; memo?: string }[];
  description?: string;
  conversions?: FxConversion[];
}
const kes = (minor: bigint) => money(minor, "KES");
const cause = () => create(EntryCauseSchema, { cause: { case: "tipAttemptId", value: randomUUID() } });
const CREDITED = subjectOf(WalletCreditedSchema);

/** A result as "OK" or "Code: message". */
const verdict = (r: PostEntryResult) => (r.code === 0 ? "OK" : `${Code[r.code]}: ${r.message}`);
/** A result's code's name ("OK" for 0). */
const codeName = (r: PostEntryResult) => (r.code === 0 ? "OK" : Code[r.code]);

describe("PostEntries: many journal entries in one call, each as PostEntry would post it alone (real PostgreSQL)", () => {
  const ledger = {} as LedgerFixture;
  before(async () => void Object.assign(ledger, await startLedger()));
  after(() => ledger.t.close());

  async function worker(currency = "KES") {
    const ownerId = randomUUID();
    const accountId = (await ledger.internal.ensureAccount({ kind: AccountKind.WORKER_WALLET, ownerKind: OwnerKind.WORKER, ownerId, currency })).account!.accountId;
    return { ownerId, accountId };
  }

  /** A tip's credit: clearing -> the wallet (net) and the platform's fee. */
  const credit = (account: string, gross: bigint, key = `mpesa:${randomUUID()}`): EntryRequest => ({
    idempotencyKey: key,
    cause: cause(),
    postings: [
      { accountId: ledger.clearing, amount: kes(-gross) },
      { accountId: account, amount: kes(gross - gross / 20n), memo: "tip" },
      { accountId: ledger.fees, amount: kes(gross / 20n), memo: "platform fee" },
    ],
    description: "Tip by M-Pesa",
  });
  /** Money out of a wallet (checked against its balance). */
  const debit = (account: string, amount: bigint, key = `payout:${randomUUID()}`): EntryRequest => ({
    idempotencyKey: key,
    cause: cause(),
    postings: [
      { accountId: account, amount: kes(-amount), memo: "out" },
      { accountId: ledger.clearing, amount: kes(amount) },
    ],
  });
  const transfer = (from: string, to: string, amount: bigint, key = `move:${randomUUID()}`): EntryRequest => ({
    idempotencyKey: key,
    cause: cause(),
    postings: [
      { accountId: from, amount: kes(-amount), memo: "from" },
      { accountId: to, amount: kes(amount), memo: "to" },
    ],
  });

  async function balance(accountId: string) {
    return (await ledger.admin.getAccount({ accountId })).balance!.ledger!.amountMinor;
  }

  /** What the ledger holds for these accounts: per account, its lines in posted_seq order and its events in outbox order. */
  async function ledgerOf(accounts: string[]) {
    const { rows: lines } = await ledger.t.db.pool.query<{ account_id: string; amount_minor: string; balance_after: string | null; memo: string }>(
      `SELECT account_id::text, amount_minor::text, balance_after::text, memo FROM wallet.postings WHERE account_id = ANY($1::uuid[]) ORDER BY posted_seq, line`,
      [accounts],
    );
    const { rows: events } = await ledger.t.db.pool.query<{ subject: string; payload: Buffer }>(`SELECT subject, payload FROM wallet.outbox WHERE subject LIKE 'ttip.wallet.%ed' ORDER BY seq`);
    return accounts.map((a) => ({
      lines: lines.filter((l) => l.account_id === a).map((l) => `${l.amount_minor} -> ${l.balance_after} ${l.memo}`),
      events: events
        .map((e) => (e.subject === CREDITED ? fromBinary(WalletCreditedSchema, e.payload) : fromBinary(WalletDebitedSchema, e.payload)))
        .filter((e) => e.accountId === a)
        .map((e) => `${e.$typeName} ${e.amount!.amountMinor} -> ${e.balanceAfter!.amountMinor}`),
    }));
  }

  /** An entry with the twin's accounts and keys in place of its own, for comparing answers. */
  function entryShape(e: JournalEntry | undefined, rename: (s: string) => string) {
    if (!e) return undefined;
    return {
      key: rename(e.idempotencyKey),
      cause: e.cause?.cause.case,
      postings: e.postings.map((p) => `${rename(p.accountId)} ${p.amount!.amountMinor} ${p.amount!.currency} ${p.memo}`),
      description: e.description,
      conversions: e.conversions.length,
    };
  }

  test("random batches answer, post, announce and order exactly as PostEntry one by one", async () => {
    // Two twin ledgers with the same wallets: one posted with PostEntries, the other with PostEntry one entry at a time.
    const twins = 5;
    const batched = await Promise.all(Array.from({ length: twins }, () => worker()));
    const alone = await Promise.all(Array.from({ length: twins }, () => worker()));
    const dollars = [await worker("USD"), await worker("USD")];
    const prefixBatched = `b${randomUUID()}:`;
    const prefixAlone = `a${randomUUID()}:`;
    const names = new Map<string, string>();
    batched.forEach((w, i) => names.set(alone[i].accountId, w.accountId).set(alone[i].ownerId, w.ownerId));
    names.set(dollars[1].accountId, dollars[0].accountId);
    const rename = (s: string) => [...names].reduce((out, [from, to]) => out.replaceAll(from, to), s.replaceAll(prefixAlone, prefixBatched));
    // Same random seed for both sides: each entry is built once per side from one description.
    let seed = 20;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)];
    const usedKeys: string[] = [];
    const missing = randomUUID();
    type Plan = (side: { w: string[]; prefix: string; usd: string }) => EntryRequest;
    const plans = (): Plan => {
      const roll = random();
      const a = Math.floor(random() * twins);
      const b = (a + 1 + Math.floor(random() * (twins - 1))) % twins;
      const amount = BigInt(1 + Math.floor(random() * 3_000));
      const key = roll > 0.85 && usedKeys.length ? pick(usedKeys) : randomUUID();
      usedKeys.push(key);
      const causeId = randomUUID();
      const shape = (r: EntryRequest): EntryRequest => ({ ...r, cause: create(EntryCauseSchema, { cause: { case: "tipAttemptId", value: causeId } }) });
      if (roll < 0.45) return (s) => shape(credit(s.w[a], amount, s.prefix + key));
      // Large enough for some to be refused.
      if (roll < 0.6) return (s) => shape(debit(s.w[a], amount * 4n, s.prefix + key));
      if (roll < 0.75) return (s) => shape(transfer(s.w[a], s.w[b], amount, s.prefix + key));
      if (roll < 0.8) return (s) => shape({ ...credit(s.w[a], amount, s.prefix + key), conversions: [create(FxConversionSchema, { from: money(amount, "USD"), to: kes(amount * 130n), rate: "130", rateSource: "configured" })] });
      if (roll < 0.83) return (s) => shape(credit(missing, amount, s.prefix + key));
      if (roll < 0.85) return (s) => shape(credit(s.usd, amount, s.prefix + key));
      // A key used before, with the same request or another.
      const same = random() < 0.5;
      return (s) => shape(same ? credit(s.w[a], amount, s.prefix + key) : debit(s.w[a], amount, s.prefix + key));
    };
    const sideB = { w: batched.map((w) => w.accountId), prefix: prefixBatched, usd: dollars[0].accountId };
    const sideA = { w: alone.map((w) => w.accountId), prefix: prefixAlone, usd: dollars[1].accountId };
    const entryIds = new Map<string, string>();
    let posted = 0;
    // The service's batch statements, by how they ended: posted, or refused by the balance check (then one by one).
    const together = { posted: 0, refused: 0 };
    const query = ledger.t.db.pool.query;
    ledger.t.db.pool.query = ((text: unknown, values?: unknown) => {
      const run = (query as (t: unknown, v?: unknown) => Promise<unknown>).call(ledger.t.db.pool, text, values);
      if (typeof text !== "string" || !text.startsWith("WITH heads")) return run;
      return run.then(
        (r) => (together.posted++, r),
        (err: unknown) => {
          together.refused++;
          throw err;
        },
      );
    }) as typeof query;
    for (let round = 0; round < 25; round++) {
      const batch = Array.from({ length: 1 + Math.floor(random() * 16) }, plans);
      const { results } = await ledger.internal.postEntries({ entries: batch.map((p) => p(sideB)) });
      assert.equal(results.length, batch.length);
      for (const [i, plan] of batch.entries()) {
        const one = await ledger.internal.postEntry(plan(sideA)).then(
          (r) => ({ code: 0, message: "", entry: r.entry }),
          (e: unknown) => ({ code: ConnectError.from(e).code, message: ConnectError.from(e).rawMessage, entry: undefined }),
        );
        const got = results[i];
        assert.equal(verdict(got), one.code === 0 ? "OK" : rename(`${Code[one.code]}: ${one.message}`), `round ${round}, entry ${i}`);
        assert.deepEqual(entryShape(got.entry, (s) => s), entryShape(one.entry, rename), `round ${round}, entry ${i}`);
        if (one.entry) {
          // The same entry again for a repeat, on both sides.
          const paired = entryIds.get(one.entry.entryId);
          if (paired) assert.equal(got.entry!.entryId, paired, "a repeat answers the first entry");
          else entryIds.set(one.entry.entryId, got.entry!.entryId);
          posted++;
        }
      }
      for (let w = 0; w < twins; w++) assert.equal(await balance(batched[w].accountId), await balance(alone[w].accountId), `round ${round}, wallet ${w}`);
    }
    // Only counting: it passes every statement on as it is.
    ledger.t.db.pool.query = query;
    assert.ok(posted > 100, `most entries posted (${posted})`);
    assert.ok(together.posted >= 15 && together.refused >= 2, `most batches by one statement, some refused by a balance and posted one by one (${JSON.stringify(together)})`);
    const ledgerBatched = await ledgerOf(batched.map((w) => w.accountId));
    const ledgerAlone = await ledgerOf(alone.map((w) => w.accountId));
    assert.deepEqual(ledgerBatched, ledgerAlone);
    // The FX conversions written, dated at posting when the request gave no time, the same on both sides.
    const conversionsOf = async (prefix: string) =>
      (await ledger.t.db.pool.query<{ c: string }>(
        `SELECT x.from_minor || ' ' || x.from_currency || ' -> ' || x.to_minor || ' ' || x.to_currency || ' at ' || x.rate || (x.rate_time = p.posted_at)::text AS c
           FROM wallet.entries e JOIN wallet.entry_conversions x USING (entry_id) JOIN wallet.postings p ON p.entry_id = e.entry_id AND p.line = 0
          WHERE e.idempotency_key LIKE $1 || '%' ORDER BY p.posted_seq`,
        [prefix],
      )).rows.map((r) => r.c);
    const converted = await conversionsOf(prefixBatched);
    assert.deepEqual(converted, await conversionsOf(prefixAlone));
    assert.ok(converted.length > 0 && converted.every((c) => c.endsWith("130true")), converted.join("\n"));
    assert.ok(ledgerBatched.every((l) => l.events.length === l.lines.length && l.lines.length > 5), "every line of a wallet announced");
  });

  test("a key given twice in a batch or again in another: the first entry; with other postings ALREADY_EXISTS", async () => {
    const w = await worker();
    const first = credit(w.accountId, 1_000n);
    const other = credit(w.accountId, 2_000n);
    const { results } = await ledger.internal.postEntries({ entries: [first, first, other, { ...other, postings: debit(w.accountId, 5n).postings }] });
    const reused = "AlreadyExists: idempotency_key: already used for a different request (journal entry)";
    assert.deepEqual(results.map(verdict), ["OK", "OK", "OK", reused]);
    assert.equal(results[1].entry!.entryId, results[0].entry!.entryId);
    const again = await ledger.internal.postEntries({ entries: [other, { ...first, postings: credit(w.accountId, 999n).postings }, first] });
    assert.deepEqual(again.results.map(verdict), ["OK", reused, "OK"]);
    assert.equal(again.results[0].entry!.entryId, results[2].entry!.entryId);
    assert.equal(again.results[2].entry!.entryId, results[0].entry!.entryId);
    assert.equal(await balance(w.accountId), 950n + 1_900n, "each key posted once");
    // A key whose first use was refused is posted by a later request in the same batch, in the batch's order:
    // the same debit again is refused too (the credit after it comes later), as one by one.
    const poor = await worker();
    const out = debit(poor.accountId, 50n);
    const ordered = await ledger.internal.postEntries({ entries: [out, out, credit(poor.accountId, 100n), out] });
    assert.deepEqual(ordered.results.map(codeName), ["FailedPrecondition", "FailedPrecondition", "OK", "OK"]);
    assert.equal(await balance(poor.accountId), 95n - 50n);
    // A key whose first use was refused (no account) is free for the next request in the same batch, as one by one.
    const key = `mpesa:${randomUUID()}`;
    const retried = await ledger.internal.postEntries({ entries: [credit(randomUUID(), 100n, key), credit(w.accountId, 100n, key)] });
    assert.deepEqual(retried.results.map(codeName), ["NotFound", "OK"]);
  });

  test("a missing account or another currency refuses only its entry, naming the line", async () => {
    const w = await worker();
    const usd = await worker("USD");
    const gone = randomUUID();
    const { results } = await ledger.internal.postEntries({ entries: [credit(w.accountId, 100n), credit(gone, 200n), credit(usd.accountId, 300n), credit(w.accountId, 400n)] });
    assert.deepEqual(results.map(verdict), [
      "OK",
      `NotFound: postings[1].account_id: no account ${gone}`,
      `InvalidArgument: postings[1].amount.currency: account ${usd.accountId} holds USD, not KES`,
      "OK",
    ]);
    assert.equal(await balance(w.accountId), 95n + 380n);
    assert.equal(await balance(usd.accountId), 0n);
  });

  test("a balance refusal refuses only its entry, checked after each entry in order, not on the batch's sum", async () => {
    const w = await worker();
    const other = await worker();
    await ledger.internal.postEntry(credit(w.accountId, 2_000n)); // 1,900
    // The debit comes before the credit that would cover it: one by one it is refused, so here too.
    const { results } = await ledger.internal.postEntries({ entries: [credit(other.accountId, 100n), debit(w.accountId, 2_500n), credit(w.accountId, 1_000n), debit(w.accountId, 100n)] });
    assert.deepEqual(results.map(codeName), ["OK", "FailedPrecondition", "OK", "OK"]);
    assert.match(results[1].message, new RegExp(`account ${w.accountId}: available balance is too low`));
    assert.equal(await balance(w.accountId), 1_900n + 950n - 100n);
    assert.equal(await balance(other.accountId), 95n);
    // The covering credit first: both posted, by one statement.
    let statements = 0;
    const counting: Queryable = { query: ((text: string, values?: unknown[]) => (statements++, ledger.t.db.pool.query(text, values))) as Queryable["query"] };
    const outcomes = await postEntries(counting, [
      { idempotencyKey: `k:${randomUUID()}`, cause: cause(), postings: [{ accountId: ledger.clearing, amountMinor: -3_000n, currency: "KES" }, { accountId: w.accountId, amountMinor: 3_000n, currency: "KES" }] },
      { idempotencyKey: `k:${randomUUID()}`, cause: cause(), postings: [{ accountId: w.accountId, amountMinor: -5_000n, currency: "KES" }, { accountId: ledger.clearing, amountMinor: 5_000n, currency: "KES" }] },
    ]);
    assert.deepEqual(outcomes.map((o) => "posted" in o), [true, true]);
    assert.equal(statements, 1, "one statement for the batch");
    assert.equal(await balance(w.accountId), 2_750n + 3_000n - 5_000n);
    const [{ lines }] = await ledgerOf([w.accountId]);
    assert.deepEqual(lines.slice(-2), ["3000 -> 5750 ", "-5000 -> 750 "], "balances after each line, in the batch's order");
  });

  test("a wallet in debt (a lost chargeback): a credit shrinks what it may owe, so a debit after it is refused as one by one", async () => {
    const w = await worker();
    await ledger.internal.postEntry({ ...debit(w.accountId, 500n), allowOwnerDebt: true });
    assert.equal(await balance(w.accountId), -500n);
    // Owing at most 500, it may stand at -500. After the credit (net 285: -215) it may owe only 215, so the debit
    // of 50 (-265) is refused, as PostEntry one by one refuses it, though the batch's sum keeps it above -500.
    const { results } = await ledger.internal.postEntries({ entries: [credit(w.accountId, 300n), debit(w.accountId, 50n), credit(w.accountId, 100n)] });
    assert.deepEqual(results.map(codeName), ["OK", "FailedPrecondition", "OK"]);
    assert.equal(await balance(w.accountId), -500n + 285n + 95n);
    // A batch that allows owner debt goes one by one, and is answered as PostEntry answers it.
    const debt = await ledger.internal.postEntries({ entries: [{ ...debit(w.accountId, 1_000n), allowOwnerDebt: true }, credit(w.accountId, 100n)] });
    assert.deepEqual(debt.results.map(codeName), ["OK", "OK"]);
    assert.equal(await balance(w.accountId), -120n - 1_000n + 95n);
  });

  test("a debt allowed while a payout held the balance ends with the hold's release: a plain debit then cannot take the wallet below zero", async () => {
    const w = await worker();
    await ledger.internal.postEntry(credit(w.accountId, 1_000n));
    const payoutId = randomUUID();
    const { hold } = await ledger.internal.placeHold({ accountId: w.accountId, amount: kes(950n), payoutId, idempotencyKey: `hold-${payoutId}` });
    // A lost chargeback while the withdrawal is out: the wallet may owe it.
    await ledger.internal.postEntry({ ...debit(w.accountId, 800n), allowOwnerDebt: true });
    assert.equal(await balance(w.accountId), 150n);
    // The withdrawal failed: nothing is held, KES 1.50 is available and nothing is owed any more.
    await ledger.internal.releaseHold({ holdId: hold!.holdId, reason: "b2c failed" });
    const refused = await ledger.internal.postEntries({ entries: [debit(w.accountId, 900n)] });
    assert.deepEqual(refused.results.map(codeName), ["FailedPrecondition"], "a refund's take-back over what the wallet holds (before: posted, the wallet at -7.50)");
    await assert.rejects(ledger.internal.postEntry(debit(w.accountId, 900n)), (e: ConnectError) => e.code === Code.FailedPrecondition);
    assert.equal(await balance(w.accountId), 150n);
    // What it holds can still go out.
    await ledger.internal.postEntry(debit(w.accountId, 150n));
    assert.equal(await balance(w.accountId), 0n);
  });

  test("two batches over the same wallets and keys in opposite orders, with PostEntry calls among them: no deadlock, each key once", async () => {
    const ws = await Promise.all(Array.from({ length: 6 }, () => worker()));
    for (const w of ws) await ledger.internal.postEntry(credit(w.accountId, 100_000n));
    const rounds = 8;
    const calls: Promise<PostEntryResult[]>[] = [];
    const expected = new Map<string, bigint>(ws.map((w) => [w.accountId, 95_000n]));
    for (let r = 0; r < rounds; r++) {
      const entries = ws.map((w, i) => {
        const next = ws[(i + 1) % ws.length];
        expected.set(w.accountId, expected.get(w.accountId)! - 10n).set(next.accountId, expected.get(next.accountId)! + 10n);
        return transfer(w.accountId, next.accountId, 10n);
      });
      const credits = ws.map((w) => credit(w.accountId, 200n));
      for (const w of ws) expected.set(w.accountId, expected.get(w.accountId)! + 190n);
      const forward = [...entries, ...credits];
      calls.push(ledger.internal.postEntries({ entries: forward }).then((r) => r.results));
      calls.push(ledger.internal.postEntries({ entries: [...forward].reverse() }).then((r) => r.results.reverse()));
      calls.push(...entries.map((e) => ledger.internal.postEntry(e).then((r) => [create(PostEntryResultSchema, { entry: r.entry })])));
    }
    const answers = await Promise.all(calls);
    for (let r = 0; r < rounds; r++) {
      const [forward, backward, ...alone] = answers.slice(r * (2 + ws.length), (r + 1) * (2 + ws.length));
      assert.deepEqual(forward.map(verdict), forward.map(() => "OK"));
      assert.deepEqual(backward.map((b) => b.entry!.entryId), forward.map((f) => f.entry!.entryId), "both batches answer the same entries");
      assert.deepEqual(alone.map((a) => a[0].entry!.entryId), forward.slice(0, ws.length).map((f) => f.entry!.entryId));
    }
    for (const w of ws) assert.equal(await balance(w.accountId), expected.get(w.accountId));
  });

  /**
   * A key claimed by another transaction that has not committed yet (its entry posted by postEntry
   * inside it): `post` runs meanwhile, waits on the key, and then the other ends with `end`.
   */
  async function raceOnKey(req: EntryRequest, post: () => Promise<JournalEntry[]>, end: "COMMIT" | "ROLLBACK") {
    const other = await ledger.t.db.pool.connect();
    try {
      await other.query("BEGIN");
      const theirs = await postEntry(other, {
        idempotencyKey: req.idempotencyKey, cause: req.cause, description: req.description,
        postings: req.postings.map((p) => ({ accountId: p.accountId, amountMinor: p.amount.amountMinor, currency: p.amount.currency, memo: p.memo })),
      });
      const answers = post();
      await eventually("the posting's statement waiting for the key", async () =>
        (await ledger.t.db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'transactionid'")).rowCount! > 0);
      await other.query(end);
      return { theirs: theirs.entry, ours: await answers };
    } finally {
      await other.query("ROLLBACK").catch(() => undefined);
      other.release();
    }
  }

  test("a key another transaction is posting under: PostEntry and PostEntries wait, then answer its entry once it commits, or post their own once it rolls back", async () => {
    for (const end of ["COMMIT", "ROLLBACK"] as const) {
      const w = await worker();
      const alone = credit(w.accountId, 1_000n);
      const single = await raceOnKey(alone, async () => [(await ledger.internal.postEntry(alone)).entry!], end);
      const batched = credit(w.accountId, 2_000n);
      const besides = credit(w.accountId, 4_000n);
      const batch = await raceOnKey(batched, async () => (await ledger.internal.postEntries({ entries: [besides, batched] })).results.map((r) => {
        assert.equal(verdict(r), "OK");
        return r.entry!;
      }), end);
      const committed = end === "COMMIT";
      assert.equal(single.ours[0].entryId === single.theirs.entryId, committed, `PostEntry after ${end}: the other's entry iff it committed`);
      assert.equal(batch.ours[1].entryId === batch.theirs.entryId, committed, `PostEntries after ${end}: the other's entry iff it committed`);
      assert.equal(batch.ours[0].idempotencyKey, besides.idempotencyKey);
      // Each key's money moved once, whichever transaction posted it: 95% of each tip.
      assert.equal(await balance(w.accountId), 950n + 1_900n + 3_800n, `after ${end}`);
      const { rows } = await ledger.t.db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM wallet.entries WHERE idempotency_key = ANY($1)", [[alone, batched, besides].map((r) => r.idempotencyKey)]);
      assert.equal(rows[0].n, 3, `one entry per key after ${end}`);
    }
  });

  test("bad input is INVALID_ARGUMENT naming the field, and writes nothing", async () => {
    const w = await worker();
    const code = (p: Promise<unknown>) => p.then(() => "posted", (e: unknown) => `${Code[ConnectError.from(e).code]} ${ConnectError.from(e).rawMessage}`);
    assert.match(await code(ledger.internal.postEntries({ entries: [] })), /^InvalidArgument .*entries/);
    assert.match(await code(ledger.internal.postEntries({ entries: Array.from({ length: 101 }, () => credit(w.accountId, 100n)) })), /^InvalidArgument .*entries/);
    const wide = (): EntryRequest => ({ idempotencyKey: `wide:${randomUUID()}`, cause: cause(), postings: Array.from({ length: 100 }, (_, i) => ({ accountId: w.accountId, amount: kes(i % 2 ? 1n : -1n) })) });
    assert.match(await code(ledger.internal.postEntries({ entries: Array.from({ length: 11 }, wide) })), /^InvalidArgument entries: at most 1000 postings in all, not 1100/);
    assert.match(await code(ledger.internal.postEntries({ entries: [credit(w.accountId, 100n), { ...credit(w.accountId, 1n), idempotencyKey: "short" }] })), /^InvalidArgument .*entries\[1\]\.idempotency_key/);
    // An unbalanced entry refuses only itself, as PostEntry refuses it.
    const { results } = await ledger.internal.postEntries({ entries: [{ ...credit(w.accountId, 100n), postings: credit(w.accountId, 100n).postings.slice(0, 2) }, credit(w.accountId, 100n)] });
    assert.deepEqual(results.map(verdict), ["InvalidArgument: postings: do not balance in KES: debits and credits differ by -5 minor units", "OK"]);
    assert.equal(await balance(w.accountId), 95n);
  });
});
