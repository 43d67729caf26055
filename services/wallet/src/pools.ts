import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { AlreadyExistsError, asConnectError, fieldError, InvalidStateError, NotFoundError, type Queryable } from "@ttip/runtime";
import { AccountKind, OwnerKind, PoolRulesSchema, PoolShareSchema, type JournalEntry, type PoolRules, type PoolShare } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { causeOf, ensureAccount, loadEntry, postEntry, UUID } from "./ledger.js";

interface RulesRow {
  venue_id: string;
  version: number;
  members: { worker_id: string; shares: number }[];
}

function toRules(r: RulesRow): PoolRules {
  return create(PoolRulesSchema, {
    venueId: r.venue_id,
    version: r.version,
    members: r.members.map((m) => create(PoolShareSchema, { workerId: m.worker_id, shares: m.shares })),
  });
}

/** Stores a new version of a venue's split rules; the same key returns the version it made. */
export async function setPoolRules(tx: Queryable, venueId: string, members: PoolShare[], idempotencyKey: string): Promise<PoolRules> {
  const seen = new Set<string>();
  members.forEach((m, i) => {
    if (!UUID.test(m.workerId)) throw fieldError(`members[${i}].worker_id`, `must be a UUID`);
    if (seen.has(m.workerId)) throw fieldError(`members[${i}].worker_id`, `${m.workerId} is listed twice`);
    seen.add(m.workerId);
  });
  await tx.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`wallet.pool.${venueId}`]);
  const prior = await tx.query<RulesRow>(`SELECT * FROM wallet.pool_rules WHERE idempotency_key = $1`, [idempotencyKey]);
  if (prior.rows[0]) {
    if (prior.rows[0].venue_id !== venueId) throw new AlreadyExistsError("idempotency_key: already used for another venue");
    return toRules(prior.rows[0]);
  }
  const { rows } = await tx.query<RulesRow>(
    `INSERT INTO wallet.pool_rules (venue_id, version, members, idempotency_key)
     SELECT $1, coalesce(max(version), 0) + 1, $2, $3 FROM wallet.pool_rules WHERE venue_id = $1
     RETURNING *`,
    [venueId, JSON.stringify(members.map((m) => ({ worker_id: m.workerId, shares: m.shares }))), idempotencyKey],
  );
  return toRules(rows[0]);
}

export async function getPoolRules(db: Queryable, venueId: string): Promise<PoolRules> {
  const { rows } = await db.query<RulesRow>(`SELECT * FROM wallet.pool_rules WHERE venue_id = $1 ORDER BY version DESC LIMIT 1`, [venueId]);
  if (!rows[0]) throw new NotFoundError(`venue ${venueId} has no pool rules yet`);
  return toRules(rows[0]);
}

/**
 * Splits what the pool has available among its members by share, in one
 * entry. Each member gets floor(available x shares / total shares); the
 * minor units left over stay in the pool for the next distribution, so
 * nothing is lost and nobody is favoured by rounding.
 */
export function splitByShares(available: bigint, members: PoolShare[]): { amounts: bigint[]; remainder: bigint } {
  const total = members.reduce((s, m) => s + BigInt(m.shares), 0n);
  const amounts = members.map((m) => (available * BigInt(m.shares)) / total);
  return { amounts, remainder: available - amounts.reduce((s, a) => s + a, 0n) };
}

export async function distributePool(tx: Queryable, venueId: string, currency: string, idempotencyKey: string): Promise<{ entry: JournalEntry; remainder: bigint }> {
  // Lock the pool first: a retry waiting here sees the first run's entry below.
  const pool = await ensureAccount(tx, AccountKind.VENUE_POOL, OwnerKind.VENUE, venueId, currency);
  const { rows: [locked] } = await tx.query<{ balance_minor: bigint; held_minor: bigint }>(
    `SELECT balance_minor, held_minor FROM wallet.accounts WHERE account_id = $1 FOR UPDATE`,
    [pool.account_id],
  );
  const done = await tx.query<{ entry_id: string; balance_after: bigint }>(
    `SELECT e.entry_id, p.balance_after FROM wallet.entries e
       JOIN wallet.postings p ON p.entry_id = e.entry_id AND p.account_id = $2
      WHERE e.idempotency_key = $1`,
    [idempotencyKey, pool.account_id],
  );
  if (done.rows[0]) return { entry: (await loadEntry(tx, done.rows[0].entry_id))!, remainder: done.rows[0].balance_after };
  const rules = await getPoolRules(tx, venueId).catch((err) => {
    throw new InvalidStateError(asConnectError(err).message);
  });
  const available = locked.balance_minor - locked.held_minor;
  const { amounts, remainder } = splitByShares(available, rules.members);
  const distributed = available - remainder;
  if (distributed <= 0n) throw new InvalidStateError(`the pool has ${available} minor units available: too little to split`);
  const postings = [{ accountId: pool.account_id, amountMinor: -distributed, currency, memo: `pool rules v${rules.version}` }];
  for (const [i, m] of rules.members.entries()) {
    if (amounts[i] === 0n) continue;
    const wallet = await ensureAccount(tx, AccountKind.WORKER_WALLET, OwnerKind.WORKER, m.workerId, currency);
    postings.push({ accountId: wallet.account_id, amountMinor: amounts[i], currency, memo: `${m.shares} shares` });
  }
  const { entry } = await postEntry(tx, {
    idempotencyKey,
    cause: causeOf("poolDistributionId", randomUUID()),
    postings,
    description: "Tip pool share",
  });
  return { entry, remainder };
}
