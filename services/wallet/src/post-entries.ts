import { timestampDate } from "@bufbuild/protobuf/wkt";
import { currentTraceparent, fieldError, ident, opaqueArray, opaqueUnnest, type Queryable } from "@ttip/runtime";
import {
  ENTRY_READ_COLUMNS,
  entryPosted,
  type EntryInput,
  type EntryPosting,
  movementEventHeads,
  type PostResult,
  postPreparedEntry,
  type PreparedEntry,
  preparedEntry,
  rememberSystemAccounts,
} from "./ledger.js";

/**
 * At most 100 entries a call (the contract's PostEntriesRequest) and 1,000 lines in all: one
 * statement posts them, and its parameters, lock set, sort and outbox rows stay bounded (an
 * entry may have 100 lines, and 100 such would be 10,000). A tip's credit has three lines, so
 * a call of 100 credits is 300.
 */
export const MAX_BATCH_ENTRIES = 100;
export const MAX_BATCH_LINES = 1_000;

/** One entry's answer: as postEntry would have answered it alone, or the error it would have thrown. */
export type BatchOutcome = { posted: PostResult } | { refused: unknown };

/**
 * Posts each entry as postEntry would post it alone, in their order, with one statement for
 * all of them (one round trip, one commit) in the common case. Each entry keeps postEntry's
 * guarantees: once per idempotency key (a repeat answers the first entry, a key used with other
 * postings ALREADY_EXISTS), accounts that exist in the entry's currency, balances checked after
 * each entry, account locks in one global order, events through the outbox in the same
 * statement, posted_seq in the entries' order. One entry refused refuses only itself.
 *
 * Run alone, not inside a transaction: a batch the balance check refuses is posted again one
 * entry at a time, each its own statement.
 *
 * A key given twice in the call is posted in rounds, in the call's order: a round ends before a
 * key it holds already, since the second's answer depends on the first's (posted: the same
 * request gets the first's entry without another statement, another ALREADY_EXISTS; refused:
 * the second may be posted, after the entries before it and before those after it).
 */
export async function postEntries(db: Queryable, inputs: EntryInput[]): Promise<BatchOutcome[]> {
  if (inputs.length < 1 || inputs.length > MAX_BATCH_ENTRIES) throw fieldError("entries", `between 1 and ${MAX_BATCH_ENTRIES} entries`);
  const lines = inputs.reduce((n, e) => n + e.postings.length, 0);
  if (lines > MAX_BATCH_LINES) throw fieldError("entries", `at most ${MAX_BATCH_LINES} postings in all, not ${lines}`);
  const outcomes: BatchOutcome[] = new Array(inputs.length);
  const hashes: (string | undefined)[] = new Array(inputs.length);
  /** Keys an earlier round posted under (or found posted), with the request's fingerprint and answer. */
  const postedKeys = new Map<string, { hash: string | undefined; outcome: BatchOutcome }>();
  let next = 0;
  while (next < inputs.length) {
    const round: number[] = [];
    const keys = new Set<string>();
    for (; next < inputs.length && !keys.has(inputs[next].idempotencyKey); next++) {
      const posted = postedKeys.get(inputs[next].idempotencyKey);
      if (posted && posted.hash === preparedHash(inputs[next])) {
        outcomes[next] = posted.outcome;
      } else {
        keys.add(inputs[next].idempotencyKey);
        round.push(next);
      }
    }
    await postRound(db, round, inputs, outcomes, hashes);
    for (const i of round) if ("posted" in outcomes[i]) postedKeys.set(inputs[i].idempotencyKey, { hash: hashes[i], outcome: outcomes[i] });
  }
  return outcomes;
}

/** The request's fingerprint, or undefined when its shape is refused (then it goes to a round, and is refused there). */
function preparedHash(input: EntryInput): string | undefined {
  try {
    return preparedEntry(input).hash;
  } catch {
    return undefined;
  }
}

/** Entries with distinct keys: checked, then posted together, or one by one when the batch cannot be. */
async function postRound(db: Queryable, indexes: number[], inputs: EntryInput[], outcomes: BatchOutcome[], hashes: (string | undefined)[]): Promise<void> {
  const entries: PreparedEntry[] = [];
  const at: number[] = [];
  for (const i of indexes) {
    try {
      const entry = preparedEntry(inputs[i]);
      hashes[i] = entry.hash;
      entries.push(entry);
      at.push(i);
    } catch (refused) {
      outcomes[i] = { refused };
    }
  }
  if (!entries.length) return;
  // A lost chargeback's debt allowance changes with each entry in a way one statement does not
  // follow (wallet.accounts.debt_allowed_minor); such entries are rare and posted one by one. One
  // entry alone goes by PostEntry's own statement, which costs PostgreSQL less (bench/wallet-postings.ts).
  // Alone, an entry claims its key without ON CONFLICT (ledger.ts, EntryClaim); a batch keeps it: two
  // replicas posting the same tips at once would otherwise undo and run again a whole batch per key lost.
  const alone = entries.length === 1 || entries.some((e) => e.input.allowOwnerDebt);
  const together = alone ? undefined : await postTogether(db, entries);
  for (const [j, entry] of entries.entries()) {
    const i = at[j];
    outcomes[i] = await (together ? entryPosted(db, entry, together[j]) : postPreparedEntry(db, entry, "alone")).then(
      (posted) => ({ posted }),
      (refused: unknown) => ({ refused }),
    );
  }
}

/**
 * The entries' postings by one statement, or undefined when the balance check refused it: then
 * one entry (at least) would be refused alone, and the caller posts them one by one, where it
 * is. That costs one statement more than posting them one by one from the start, and is rare:
 * the batches are tips' credits, which take money out of system accounts only (never checked)
 * and put it into worker wallets and pools, where a credit never fails the check.
 */
async function postTogether(db: Queryable, entries: PreparedEntry[]): Promise<EntryPosting[] | undefined> {
  try {
    const { rows } = await db.query<EntryPosting & { unannounced_accounts: string[] | null }>(POSTING_TOGETHER, postingParameters(entries));
    rememberSystemAccounts(rows[0]?.unannounced_accounts ?? null);
    return rows;
  } catch (err) {
    if ((err as { constraint?: string }).constraint === "available_not_negative") return undefined;
    throw err;
  }
}

function postingParameters(entries: PreparedEntry[]): unknown[] {
  const traceparent = currentTraceparent() ?? null;
  const lines = entries.flatMap(({ input, entryId }, k) => {
    const events = movementEventHeads(entryId, String(input.cause.cause.value), input.postings);
    return input.postings.map((p, line) => ({ e: k + 1, line, p, event: events[line] }));
  });
  const conversions = entries.flatMap(({ conversions }, k) => conversions.map((c, line) => ({ e: k + 1, line, c })));
  return [
    entries.map((e) => e.entryId),
    entries.map((e) => e.input.idempotencyKey),
    entries.map((e) => e.hash),
    entries.map((e) => e.input.cause.cause.case),
    entries.map((e) => String(e.input.cause.cause.value)),
    entries.map((e) => e.input.description ?? ""),
    lines.map((l) => l.e),
    lines.map((l) => l.line),
    lines.map((l) => l.p.accountId),
    lines.map((l) => l.p.amountMinor.toString()),
    lines.map((l) => l.p.currency),
    lines.map((l) => l.p.memo ?? ""),
    lines.map((l) => l.event?.id ?? null),
    lines.map((l) => l.event?.subject ?? null),
    lines.map((l) => (l.event ? Buffer.from(l.event.data) : null)),
    lines.map((l) => (l.event ? traceparent : null)),
    conversions.map((x) => x.e),
    conversions.map((x) => x.line),
    conversions.map((x) => x.c.from!.amountMinor.toString()),
    conversions.map((x) => x.c.from!.currency),
    conversions.map((x) => x.c.to!.amountMinor.toString()),
    conversions.map((x) => x.c.to!.currency),
    conversions.map((x) => x.c.rate),
    conversions.map((x) => x.c.rateSource),
    conversions.map((x) => (x.c.rateTime ? timestampDate(x.c.rateTime) : null)),
  ];
}

/**
 * ledger.ts's posting statement for many entries (e: an entry's place in the batch, from 1). Its CTEs:
 * - refused: per entry, the first line whose account is missing or holds another currency; that entry claims nothing;
 * - claimed: the headers of the others under their keys, inserted in key order, so two batches sharing keys
 *   wait for each other's keys in one order (no deadlock); a key used before claims nothing, and moves nothing;
 * - prior: for each entry that claimed nothing, its key's entry (a replay, or ALREADY_EXISTS);
 * - locked: the owned accounts of the claimed entries, locked in id order (as ledger.ts, with PostEntry: keys
 *   first, then accounts, each in one order);
 * - reached, steps, d: per account, its balance's change after each entry in the batch's order, and the two
 *   lowest points the check needs; d materialized, computed once: as a subquery it was the inner side of
 *   moved's nested loop, its sorts and window sums run again for each account moved;
 * - moved: each account moved once, by its entries' sum, if the balance after EACH entry passes the check the
 *   account's constraint makes (available_not_negative, with no owner debt allowed in a batch). After entry i,
 *   at balance b_i, holds h and debt allowance D at the start: it passes when b_i >= h - D, and, if b_i < h,
 *   when no earlier entry of the batch left the balance higher (the allowance only shrinks while below the
 *   holds). Otherwise the balance is written as one that fails the constraint: the statement fails, nothing
 *   is written, and the entries go one by one (postTogether);
 * - seqs, seqs_ranked, s: one posting_seq and time per claimed entry, taken after the locks, given out in the
 *   entries' order (whatever order nextval ran in), so per account posted_seq follows the order balances moved
 *   in; the sequence numbers ranked once (seqs_ranked), not again for each entry they are matched to;
 * - lines_after, posted, announced, converted: as ledger.ts, each owned line's balance after counted across
 *   the batch in the entries' order; events inserted in that order.
 * It answers one row per entry, in order. Its arrays are opaque to the planner (the runtime's opaqueArray), so
 * the prepared statement keeps one generic plan instead of being planned again for every batch's size.
 */
const POSTING_TOGETHER = `WITH heads AS (
  SELECT * FROM ${opaqueUnnest(["uuid", "text", "text", "text", "text", "text"], 1)} WITH ORDINALITY
    AS h(entry_id, idempotency_key, request_hash, cause_kind, cause_ref, description, e)),
lines AS (
  SELECT * FROM ${opaqueUnnest(["int", "smallint", "uuid", "bigint", "text", "text", "uuid", "text", "bytea", "text"], 7)}
    AS t(e, line, account_id, amount_minor, currency, memo, event_id, subject, event_head, traceparent)),
refused AS (
  SELECT DISTINCT ON (l.e) l.e, l.line, a.currency::text AS held
    FROM lines l LEFT JOIN (SELECT account_id, currency FROM wallet.accounts WHERE account_id = ANY(${opaqueArray(9, "uuid")})) a ON a.account_id = l.account_id
   WHERE a.account_id IS NULL OR a.currency::text <> l.currency
   ORDER BY l.e, l.line),
claimed AS (
  INSERT INTO wallet.entries (entry_id, idempotency_key, request_hash, cause_kind, cause_ref, description)
  SELECT h.entry_id, h.idempotency_key, h.request_hash, h.cause_kind, h.cause_ref, h.description
    FROM heads h WHERE NOT EXISTS (SELECT 1 FROM refused r WHERE r.e = h.e)
   ORDER BY h.idempotency_key
  ON CONFLICT (idempotency_key) DO NOTHING
  RETURNING entry_id),
mine AS (
  SELECT h.e, h.entry_id FROM heads h JOIN claimed c ON c.entry_id = h.entry_id),
prior AS (
  SELECT h.e, row_to_json(p) AS prior
    FROM heads h, LATERAL (SELECT ${ENTRY_READ_COLUMNS} FROM wallet.entry_read(NULL, h.idempotency_key)) p
   WHERE NOT EXISTS (SELECT 1 FROM claimed c WHERE c.entry_id = h.entry_id)),
claimed_lines AS (
  SELECT l.e, l.line, l.account_id, l.amount_minor, l.currency, l.memo, l.event_id, l.subject, l.event_head, l.traceparent
    FROM lines l JOIN mine m ON m.e = l.e),
locked AS MATERIALIZED (
  SELECT a.account_id FROM wallet.accounts a
   WHERE a.account_id = ANY(${opaqueArray(9, "uuid")}) AND NOT a.may_go_negative AND a.account_id IN (SELECT account_id FROM claimed_lines)
   ORDER BY a.account_id
   FOR NO KEY UPDATE),
reached AS (
  SELECT account_id, e, delta, sum(delta) OVER (PARTITION BY account_id ORDER BY e)::bigint AS reached
    FROM (SELECT account_id, e, sum(amount_minor)::bigint AS delta FROM claimed_lines GROUP BY account_id, e) x),
steps AS (
  SELECT account_id, delta, reached,
         reached < max(reached) OVER (PARTITION BY account_id ORDER BY e ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS fell
    FROM reached),
d AS MATERIALIZED (
  SELECT account_id, sum(delta)::bigint AS delta, min(reached)::bigint AS lowest, min(reached) FILTER (WHERE fell)::bigint AS lowest_after_fall
    FROM steps GROUP BY account_id),
moved AS (
  UPDATE wallet.accounts a SET
    balance_minor = CASE WHEN a.balance_minor + d.lowest >= a.held_minor - a.debt_allowed_minor
                           AND (d.lowest_after_fall IS NULL OR a.balance_minor + d.lowest_after_fall >= a.held_minor)
                         THEN a.balance_minor + d.delta
                         ELSE a.held_minor - a.debt_allowed_minor - 1 END,
    debt_allowed_minor = LEAST(a.debt_allowed_minor, GREATEST(0, a.held_minor - (a.balance_minor + d.delta)))
    FROM locked k JOIN d ON d.account_id = k.account_id
   WHERE a.account_id = k.account_id AND a.account_id = ANY(${opaqueArray(9, "uuid")})
  RETURNING a.account_id, a.owner_id, a.balance_minor - d.delta AS opening),
seqs AS (
  SELECT nextval('wallet.posting_seq') AS seq, clock_timestamp() AS posted_at
    FROM mine, (SELECT count(*) FROM moved) n),
seqs_ranked AS MATERIALIZED (
  SELECT seq, posted_at, row_number() OVER (ORDER BY seq) AS r FROM seqs),
s AS (
  SELECT m.e, q.seq, q.posted_at
    FROM (SELECT e, row_number() OVER (ORDER BY e) AS r FROM mine) m
    JOIN seqs_ranked q ON q.r = m.r),
lines_after AS (
  SELECT l.e, l.line, l.account_id, l.amount_minor, l.currency, l.memo, l.event_id, l.subject, l.event_head, l.traceparent, mv.owner_id,
         (mv.opening + sum(l.amount_minor) OVER (PARTITION BY l.account_id ORDER BY l.e, l.line))::bigint AS balance_after
    FROM claimed_lines l LEFT JOIN moved mv ON mv.account_id = l.account_id),
posted AS (
  INSERT INTO wallet.postings (entry_id, line, account_id, amount_minor, currency, balance_after, memo, posted_seq, posted_at)
  SELECT m.entry_id, x.line, x.account_id, x.amount_minor, x.currency, x.balance_after, x.memo, s.seq, s.posted_at
    FROM lines_after x JOIN mine m ON m.e = x.e JOIN s ON s.e = x.e),
announced AS (
  INSERT INTO ${ident("wallet")}.outbox (event_id, subject, payload, traceparent)
  SELECT x.event_id, x.subject, x.event_head || wallet.movement_event_tail(x.owner_id, x.balance_after, x.currency), x.traceparent
    FROM lines_after x WHERE x.balance_after IS NOT NULL
   ORDER BY x.e, x.line),
converted AS (
  INSERT INTO wallet.entry_conversions (entry_id, line, from_minor, from_currency, to_minor, to_currency, rate, rate_source, rate_time)
  SELECT m.entry_id, x.line, x.from_minor, x.from_currency, x.to_minor, x.to_currency, x.rate, x.rate_source, coalesce(x.rate_time, s.posted_at)
    FROM ${opaqueUnnest(["int", "smallint", "bigint", "text", "bigint", "text", "text", "text", "timestamptz"], 17)}
           AS x(e, line, from_minor, from_currency, to_minor, to_currency, rate, rate_source, rate_time)
    JOIN mine m ON m.e = x.e JOIN s ON s.e = x.e)
SELECT m.entry_id AS claimed_entry_id, s.posted_at AS claimed_posted_at, r.line AS refused_line, r.held AS refused_held, p.prior,
       (SELECT array_agg(DISTINCT x.account_id::text) FROM lines_after x WHERE x.event_head IS NOT NULL AND x.balance_after IS NULL) AS unannounced_accounts
  FROM heads h LEFT JOIN mine m ON m.e = h.e LEFT JOIN s ON s.e = h.e LEFT JOIN refused r ON r.e = h.e LEFT JOIN prior p ON p.e = h.e
 ORDER BY h.e`;
