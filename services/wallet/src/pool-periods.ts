// A venue pool split per period. The venue service decides who gets what;
// the ledger guarantees the money side: only a finished period's takings are
// split, exactly all of them, once, and a correction is a reversing entry.
import { Code, ConnectError } from "@connectrpc/connect";
import { fieldError, formatMoney, IdempotencyConflictError, InvalidStateError, isUuid, NotFoundError, type Queryable } from "@ttip/runtime";
import { AccountKind, OwnerKind, type JournalEntry } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { causeOf, ensureAccount, loadEntryByKey, postEntry, reverseEntry, type PostingInput } from "./ledger.js";
import { assertCurrency } from "@ttip/runtime";

/** Longest period one distribution may cover: a month and a bit. */
const MAX_PERIOD_MS = 32 * 24 * 3600_000;

export interface Takings {
  collectedMinor: bigint;
  credits: bigint;
  overlappingDistributionId: string;
}

/** What the pool may pay out now (its balance less holds). */
async function poolAvailable(db: Queryable, poolAccountId: string): Promise<bigint> {
  const { rows: [pool] } = await db.query<{ available: bigint }>("SELECT balance_minor - held_minor AS available FROM wallet.accounts WHERE account_id = $1", [poolAccountId]);
  return BigInt(pool.available);
}

function checkPeriod(start: Date, end: Date): void {
  if (!(start.getTime() < end.getTime())) throw fieldError("end", "must be after start");
  if (end.getTime() - start.getTime() > MAX_PERIOD_MS) throw fieldError("end", "a period covers at most 32 days");
}

/**
 * Net tips posted to the pool within [start, end): every posting except
 * distributions and their reversals (a refunded tip counts against it). A pool
 * is owned, so its lines carry balance_after: saying so reads them through the
 * index of owned lines by time (migration 0006).
 */
export async function poolTakings(db: Queryable, accountId: string, start: Date, end: Date): Promise<Takings> {
  const { rows: [t] } = await db.query<{ collected: bigint; credits: bigint }>(
    `SELECT coalesce(sum(p.amount_minor), 0)::bigint AS collected, count(*) FILTER (WHERE p.amount_minor > 0)::bigint AS credits
       FROM wallet.postings p
       JOIN wallet.entries e ON e.entry_id = p.entry_id
      WHERE p.account_id = $1 AND p.posted_at >= $2 AND p.posted_at < $3 AND p.balance_after IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM wallet.pool_distributions d WHERE d.entry_id = p.entry_id OR d.reversal_entry_id = p.entry_id)`,
    [accountId, start, end],
  );
  const { rows: [overlap] } = await db.query<{ distribution_id: string }>(
    `SELECT distribution_id FROM wallet.pool_distributions
      WHERE account_id = $1 AND reversal_entry_id IS NULL AND period_start < $3 AND period_end > $2
      ORDER BY period_start LIMIT 1`,
    [accountId, start, end],
  );
  return { collectedMinor: t.collected, credits: t.credits, overlappingDistributionId: overlap?.distribution_id ?? "" };
}

/**
 * The takings and what the pool holds, read after them: a tip landing in between raises the holding,
 * never makes a pool that owes nothing look as if it did.
 */
export async function getPoolTakings(db: Queryable, venueId: string, currency: string, start: Date, end: Date): Promise<Takings & { availableMinor: bigint }> {
  assertCurrency(currency, "currency");
  checkPeriod(start, end);
  const pool = await ensureAccount(db, AccountKind.VENUE_POOL, OwnerKind.VENUE, venueId, currency);
  const takings = await poolTakings(db, pool.account_id, start, end);
  return { ...takings, availableMinor: await poolAvailable(db, pool.account_id) };
}

export interface PoolDistributionInput {
  venueId: string;
  currency: string;
  start: Date;
  end: Date;
  distributionId: string;
  shares: { workerId: string; amountMinor: bigint; memo: string }[];
  idempotencyKey: string;
  description: string;
  /**
   * The call's: aborted (its deadline passed, its caller gone), the split is not committed. The venue takes a call it
   * gave up on as not posted, and may take a later refusal as final (abandoning the plan): this one, committed after,
   * would pay a split the venue shows nowhere, and its period could never be split or reversed.
   */
  signal?: AbortSignal;
}

/**
 * Posts the split as one entry, once per key. Its accounts are locked first,
 * all in one statement and in id order, as every posting locks them (so a
 * posting touching the pool and a wallet cannot deadlock with it). Holding
 * the pool's lock is what times the period: every tip posts to the pool under
 * the same lock and takes its posting time while holding it, so once we hold
 * it no tip timed before now is still uncommitted and none can be timed
 * inside a period that is already over. A tip arriving meanwhile waits and
 * lands after `end`, in the next period.
 */
export async function postPoolDistribution(tx: Queryable, input: PoolDistributionInput): Promise<{ entry: JournalEntry; created: boolean }> {
  assertCurrency(input.currency, "currency");
  checkPeriod(input.start, input.end);
  const seen = new Set<string>();
  input.shares.forEach((s, i) => {
    if (!isUuid(s.workerId)) throw fieldError(`shares[${i}].worker_id`, `must be a UUID`);
    if (seen.has(s.workerId)) throw fieldError(`shares[${i}].worker_id`, `${s.workerId} is listed twice`);
    if (s.amountMinor <= 0n) throw fieldError(`shares[${i}].amount`, `must be greater than zero`);
    seen.add(s.workerId);
  });
  const pool = await ensureAccount(tx, AccountKind.VENUE_POOL, OwnerKind.VENUE, input.venueId, input.currency);
  // Wallets made here stay uncommitted until the split commits: two splits sharing new workers make them in
  // the same order (the workers' ids), so one waits for the other, never each for the other.
  const wallets = new Map<string, string>();
  for (const workerId of [...seen].sort()) {
    wallets.set(workerId, (await ensureAccount(tx, AccountKind.WORKER_WALLET, OwnerKind.WORKER, workerId, input.currency)).account_id);
  }
  await lockAccounts(tx, [pool.account_id, ...wallets.values()]);
  // Read after the locks are held (a separate statement), so it is later than every committed tip's time.
  const { rows: [{ now }] } = await tx.query<{ now: Date }>(`SELECT clock_timestamp() AS now`);
  const prior = await loadEntryByKey(tx, input.idempotencyKey);
  if (prior) {
    if (!(await isSameSplit(tx, prior, input, splitLines(pool.account_id, wallets, input)))) throw new IdempotencyConflictError(input.idempotencyKey, "pool distribution");
    // Reversed since (an admin's ReverseEntry while the venue's answer was lost): its money is back in the pool and
    // the period free. Answered as posted, the venue recorded shares no one has and kept the period from a new split.
    if (prior.reversedByEntryId) {
      throw new InvalidStateError(`idempotency_key: the split posted under it (entry ${prior.entryId}) was reversed by entry ${prior.reversedByEntryId}; its money is back in the pool: split the period again`);
    }
    return { entry: prior, created: false };
  }
  if (input.end.getTime() > now.getTime()) {
    throw new InvalidStateError(`end: the period is not over yet (ends ${input.end.toISOString()}); tips may still arrive in it`);
  }
  const takings = await poolTakings(tx, pool.account_id, input.start, input.end);
  if (takings.overlappingDistributionId) {
    throw new InvalidStateError(`start: distribution ${takings.overlappingDistributionId} already covers part of this period; reverse it first`);
  }
  const total = input.shares.reduce((s, x) => s + x.amountMinor, 0n);
  if (total !== takings.collectedMinor) {
    throw new InvalidStateError(`shares: add up to ${total} minor units but the pool took ${takings.collectedMinor} in the period; preview again`);
  }
  await refuseOwingPool(tx, pool.account_id, total, input.currency);
  const postings = splitLines(pool.account_id, wallets, input);
  const result = await postEntry(tx, {
    idempotencyKey: input.idempotencyKey,
    cause: causeOf("poolDistributionId", input.distributionId),
    postings,
    description: input.description || "Tip pool share",
  });
  await tx.query(
    `INSERT INTO wallet.pool_distributions (entry_id, account_id, distribution_id, period_start, period_end, amount_minor)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [result.entry.entryId, pool.account_id, input.distributionId, input.start, input.end, total],
  );
  // Last, with the pool's lock held to the commit: a split under the same key after this waits for it and answers it.
  if (input.signal?.aborted) throw new ConnectError("the caller stopped waiting for this split (its deadline passed): nothing is posted; ask again", Code.DeadlineExceeded);
  return result;
}

/**
 * A period's takings the pool no longer holds: refunds or lost chargebacks of tips already split left it owing
 * (their own period took less than nothing, so no split netted them). Said as such, under the pool's lock, rather
 * than as the posting's "balance too low" on an account id: a split of a period covering them nets them.
 */
async function refuseOwingPool(tx: Queryable, poolAccountId: string, total: bigint, currency: string): Promise<void> {
  const available = await poolAvailable(tx, poolAccountId);
  if (available >= total) return;
  throw new InvalidStateError(`shares: the pool holds ${formatMoney(available, currency)} but the period took ${formatMoney(total, currency)}: `
    + `it owes ${formatMoney(total - available, currency)} from refunds or chargebacks after earlier splits; split a period that also covers them`);
}

/** The split's lines: the pool pays out the shares' total, each worker's wallet takes its share. */
function splitLines(poolAccountId: string, wallets: Map<string, string>, input: PoolDistributionInput): PostingInput[] {
  const total = input.shares.reduce((s, x) => s + x.amountMinor, 0n);
  const postings: PostingInput[] = [{ accountId: poolAccountId, amountMinor: -total, currency: input.currency, memo: "pool distribution" }];
  for (const s of input.shares) {
    postings.push({ accountId: wallets.get(s.workerId)!, amountMinor: s.amountMinor, currency: input.currency, memo: s.memo.slice(0, 200) });
  }
  return postings;
}

/**
 * Whether the entry under the key is this split: the same distribution, period, and money on each account.
 * Wording (memos, description) is not compared: the venue's key is deterministic and its retry finishes a split
 * already posted, so a retry worded by a newer release must still be answered with the first entry, not
 * refused (a refusal makes the venue abandon a distribution whose money moved).
 */
async function isSameSplit(tx: Queryable, prior: JournalEntry, input: PoolDistributionInput, lines: PostingInput[]): Promise<boolean> {
  const cause = prior.cause?.cause;
  if (cause?.case !== "poolDistributionId" || cause.value !== input.distributionId) return false;
  const { rows: [period] } = await tx.query<{ period_start: Date; period_end: Date }>(
    `SELECT period_start, period_end FROM wallet.pool_distributions WHERE entry_id = $1`,
    [prior.entryId],
  );
  if (period?.period_start.getTime() !== input.start.getTime() || period.period_end.getTime() !== input.end.getTime()) return false;
  const money = (accountId: string, amountMinor: bigint, currency: string) => `${accountId} ${amountMinor} ${currency}`;
  const posted = prior.postings.map((p) => money(p.accountId, p.amount!.amountMinor, p.amount!.currency)).sort();
  const asked = lines.map((p) => money(p.accountId, p.amountMinor, p.currency)).sort();
  return posted.length === asked.length && posted.every((line, i) => line === asked[i]);
}

/**
 * Locks owned accounts in one statement, in id order: the order the posting statement locks them in
 * (LockRows above the Sort), so a transaction that locks ahead of its posting takes no lock out of order.
 */
async function lockAccounts(tx: Queryable, accountIds: string[]): Promise<void> {
  await tx.query(`SELECT account_id FROM wallet.accounts WHERE account_id = ANY($1::uuid[]) ORDER BY account_id FOR NO KEY UPDATE`, [accountIds]);
}

/** Undoes a distribution (workers give their shares back to the pool), once; frees its period. */
export async function reversePoolDistribution(tx: Queryable, entryId: string, idempotencyKey: string, reason: string): Promise<JournalEntry> {
  const { rows: [d] } = await tx.query(`SELECT 1 FROM wallet.pool_distributions WHERE entry_id = $1`, [entryId]);
  if (!d) throw new NotFoundError(`entry_id: ${entryId} is not a pool distribution`);
  // No lock ahead: the reversal's posting locks the pool and the wallets in id order, as every posting does
  // (a distribution of an overlapping period waits there, and sees this one reversed once it commits).
  // The reversal releases the period (reverseEntry).
  return (await reverseEntry(tx, entryId, idempotencyKey, reason)).entry;
}
