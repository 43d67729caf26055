import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { assertCurrency, CARD_FEE_BPS_MAX, emitEvent, feeAmountMaxMinor, fieldError, IdempotencyConflictError, lockForTransaction, MPESA_LIMITS, NotConfiguredError, type Queryable } from "@ttip/runtime";
import { FeeScheduleCreatedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { AccountKind, FeeScheduleSchema, TariffBandSchema, type FeeSchedule, OwnerKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";

interface Band {
  min: number;
  max: number;
  fee: number;
}

interface ScheduleRow {
  currency: string;
  version: number;
  platform_fee_bps: number;
  platform_fee_min_minor: bigint;
  platform_fee_cap_minor: bigint;
  mpesa_b2c_bands: Band[];
  card_fee_bps: number;
  card_fee_fixed_minor: bigint;
  effective_from: Date;
}

export function toFeeSchedule(r: ScheduleRow): FeeSchedule {
  return create(FeeScheduleSchema, {
    version: r.version,
    currency: r.currency,
    platformFeeBps: r.platform_fee_bps,
    platformFeeMinMinor: r.platform_fee_min_minor,
    platformFeeCapMinor: r.platform_fee_cap_minor,
    mpesaB2cBands: r.mpesa_b2c_bands.map((b) =>
      create(TariffBandSchema, { minMinor: BigInt(b.min), maxMinor: BigInt(b.max), feeMinor: BigInt(b.fee) }),
    ),
    cardFeeBps: r.card_fee_bps,
    cardFeeFixedMinor: r.card_fee_fixed_minor,
    effectiveFrom: timestampFromDate(r.effective_from),
  });
}

/** The schedule in force for `currency` at `at`: the newest version already effective. */
export async function currentSchedule(db: Queryable, currency: string, at = new Date()): Promise<FeeSchedule> {
  return (await currentScheduleAndWallets(db, currency, null, at)).schedule;
}

/**
 * currentSchedule, and in the same round trip the currencies of `workerId`'s
 * wallets (none for null): a tip's quote needs both, and every tip is quoted.
 * The columns are named so that the statement is prepared (the runtime's db.ts).
 */
export async function currentScheduleAndWallets(db: Queryable, currency: string, workerId: string | null, at = new Date()): Promise<{ schedule: FeeSchedule; walletCurrencies: string[] }> {
  const { rows } = await db.query<ScheduleRow & { wallet_currencies: string[] }>(
    `SELECT s.currency, s.version, s.platform_fee_bps, s.platform_fee_min_minor, s.platform_fee_cap_minor, s.mpesa_b2c_bands, s.card_fee_bps, s.card_fee_fixed_minor, s.effective_from,
            ARRAY(SELECT trim(a.currency) FROM wallet.accounts a WHERE a.kind = $3 AND a.owner_kind = $4 AND a.owner_id = $5 ORDER BY a.currency) AS wallet_currencies
       FROM wallet.fee_schedules s WHERE s.currency = $1 AND s.effective_from <= $2 ORDER BY s.version DESC LIMIT 1`,
    [currency, at, AccountKind.WORKER_WALLET, OwnerKind.WORKER, workerId],
  );
  if (!rows[0]) throw new NotConfiguredError(`no fee schedule for ${currency}`);
  return { schedule: toFeeSchedule(rows[0]), walletCurrencies: rows[0].wallet_currencies };
}

export async function listSchedules(db: Queryable, currency: string): Promise<FeeSchedule[]> {
  const { rows } = await db.query<ScheduleRow>(
    `SELECT * FROM wallet.fee_schedules WHERE ($1 = '' OR currency = $1) ORDER BY currency, version`,
    [currency],
  );
  return rows.map(toFeeSchedule);
}

/**
 * Validates and stores a new version; the same idempotency key returns the
 * version it made. When this call added the version (not on a repeat), its
 * ttip.wallet.fee_schedule_created event goes to the outbox and `onCreated`
 * runs (e.g. to audit it), both in `db`'s transaction: the caller passes one.
 */
export async function createSchedule(
  db: Queryable, s: FeeSchedule, idempotencyKey: string,
  onCreated?: (db: Queryable, schedule: FeeSchedule) => Promise<void>,
): Promise<FeeSchedule> {
  const prior = await db.query<ScheduleRow>(`SELECT * FROM wallet.fee_schedules WHERE idempotency_key = $1`, [idempotencyKey]);
  if (prior.rows[0]) return sameTermsOrConflict(prior.rows[0], s, idempotencyKey);
  const bad = (field: string, why: string) => fieldError(`schedule.${field}`, why);
  assertCurrency(s.currency, "schedule.currency");
  const amountMax = feeAmountMaxMinor(s.currency)!; // defined for every currency assertCurrency takes
  const tooLarge = `must be at most ${amountMax} minor units, the largest tip in ${s.currency}`;
  if (s.platformFeeBps < 0 || s.platformFeeBps > 10_000) throw bad("platform_fee_bps", "must be 0..10000");
  if (s.cardFeeBps < 0 || s.cardFeeBps > CARD_FEE_BPS_MAX) throw bad("card_fee_bps", `must be 0..${CARD_FEE_BPS_MAX}`);
  if (s.platformFeeMinMinor < 0n || s.platformFeeCapMinor < s.platformFeeMinMinor) {
    throw bad("platform_fee_cap_minor", "must be at least platform_fee_min_minor, both not negative");
  }
  if (s.platformFeeCapMinor > amountMax) throw bad("platform_fee_cap_minor", tooLarge);
  if (s.cardFeeFixedMinor < 0n) throw bad("card_fee_fixed_minor", "must not be negative");
  if (s.cardFeeFixedMinor > amountMax) throw bad("card_fee_fixed_minor", tooLarge);
  const bands = [...s.mpesaB2cBands].sort((a, b) => Number(a.minMinor - b.minMinor));
  for (let i = 0; i < bands.length; i++) {
    const b = bands[i];
    if (b.minMinor <= 0n || b.maxMinor < b.minMinor || b.feeMinor < 0n) throw bad(`mpesa_b2c_bands[${i}]`, "needs 0 < min <= max and fee >= 0");
    // Edges past M-Pesa's largest payout are kept (a schedule made so still gets new versions); as JSON numbers, exact.
    if (b.maxMinor > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`mpesa_b2c_bands[${i}]`, `max must be at most ${Number.MAX_SAFE_INTEGER}`);
    if (b.feeMinor > amountMax) throw bad(`mpesa_b2c_bands[${i}]`, `fee ${tooLarge}`);
    if (i > 0 && b.minMinor !== bands[i - 1].maxMinor + 1n) throw bad(`mpesa_b2c_bands[${i}]`, "bands must be contiguous, without gaps or overlaps");
  }
  // Every KES payout is priced from these bands (b2cFee refuses an amount none covers): a KES
  // schedule without them would refuse every withdrawal until the next version.
  if (s.currency === "KES" && !(bands.length > 0 && bands[0].minMinor <= MPESA_LIMITS.payoutMinMinor && bands.at(-1)!.maxMinor >= MPESA_LIMITS.perTransactionMinor)) {
    throw bad("mpesa_b2c_bands", `must cover every payout M-Pesa allows, ${MPESA_LIMITS.payoutMinMinor} to ${MPESA_LIMITS.perTransactionMinor} minor units`);
  }
  const effectiveFrom = s.effectiveFrom ? timestampDate(s.effectiveFrom) : new Date();
  if (effectiveFrom.getTime() < Date.now() - 60_000) throw bad("effective_from", "must not be in the past");
  // One new version of a currency at a time: each takes the highest plus one, seen after the one before committed.
  await lockForTransaction(db, `wallet.fee-schedule.${s.currency}`);
  const { rows } = await db.query<ScheduleRow>(
    `INSERT INTO wallet.fee_schedules
       (currency, version, platform_fee_bps, platform_fee_min_minor, platform_fee_cap_minor, mpesa_b2c_bands,
        card_fee_bps, card_fee_fixed_minor, effective_from, idempotency_key)
     SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9 FROM wallet.fee_schedules WHERE currency = $1
     ON CONFLICT (idempotency_key) DO NOTHING
     RETURNING *`,
    [
      s.currency, s.platformFeeBps, s.platformFeeMinMinor, s.platformFeeCapMinor,
      JSON.stringify(bands.map((b) => ({ min: Number(b.minMinor), max: Number(b.maxMinor), fee: Number(b.feeMinor) }))),
      s.cardFeeBps, s.cardFeeFixedMinor, effectiveFrom, idempotencyKey,
    ],
  );
  if (rows[0]) {
    const created = toFeeSchedule(rows[0]);
    // Payment quotes tips from a copy of the schedules and reloads it on this event.
    await emitEvent(db, "wallet", FeeScheduleCreatedSchema, { currency: created.currency, version: created.version, effectiveFrom: created.effectiveFrom });
    await onCreated?.(db, created);
    return created;
  }
  return sameTermsOrConflict((await db.query<ScheduleRow>(`SELECT * FROM wallet.fee_schedules WHERE idempotency_key = $1`, [idempotencyKey])).rows[0], s, idempotencyKey);
}

/**
 * The version a key made, when the retry asks for the same terms. A corrected schedule sent again under the key of
 * the one with the typo would otherwise get the typo back as success, and every tip would pay it.
 */
function sameTermsOrConflict(stored: ScheduleRow, asked: FeeSchedule, idempotencyKey: string): FeeSchedule {
  const made = toFeeSchedule(stored);
  const bands = (s: FeeSchedule) => [...s.mpesaB2cBands].sort((a, b) => Number(a.minMinor - b.minMinor)).map((b) => `${b.minMinor}-${b.maxMinor}:${b.feeMinor}`).join(",");
  const same = made.currency === asked.currency && made.platformFeeBps === asked.platformFeeBps
    && made.platformFeeMinMinor === asked.platformFeeMinMinor && made.platformFeeCapMinor === asked.platformFeeCapMinor
    && made.cardFeeBps === asked.cardFeeBps && made.cardFeeFixedMinor === asked.cardFeeFixedMinor && bands(made) === bands(asked)
    && (!asked.effectiveFrom || timestampDate(asked.effectiveFrom).getTime() === timestampDate(made.effectiveFrom!).getTime());
  if (!same) throw new IdempotencyConflictError(idempotencyKey, `CreateFeeSchedule made ${made.currency} v${made.version} with other terms`);
  return made;
}

/** One line for the audit log: what a version charges and from when. */
export function feeScheduleSummary(s: FeeSchedule): string {
  const from = s.effectiveFrom ? timestampDate(s.effectiveFrom).toISOString() : "now";
  return `v${s.version} from ${from}: platform ${s.platformFeeBps} bps (min ${s.platformFeeMinMinor}, cap ${s.platformFeeCapMinor}), card ${s.cardFeeBps} bps + ${s.cardFeeFixedMinor}, ${s.mpesaB2cBands.length} B2C bands (minor units)`;
}
