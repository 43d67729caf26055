// The admin console's view of payments: tips and payouts across all workers
// (filters and keyset paging), one payment's full story (raw callbacks,
// alerts, ledger entry), and a re-query of a stuck attempt.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { auditAdminAction, decodeTimeIdToken, fieldError, InvalidStateError, keysetPage, keysetTime, NotFoundError, pageSize, type Queryable, withTransaction } from "@ttip/runtime";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { PaymentMethodKind } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import type { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import type { PaymentHandlerContext } from "./context.js";
import { FRAUD_ACTION, FRAUD_REASON, fraudAlertMessage, PAYOUT_STATUS_CODE, TIP_STATUS_CODE, payoutMessage, toCallback, type FraudAlertRow } from "../convert.js";
import { loadPayout, reconcilePayouts, type PayoutRow } from "../payouts.js";
import { rulesInForce } from "../fraud.js";
import { loadTip, reconcileTips, type TipRow } from "../tips.js";
import { checkMpesaBalance, getMpesaBalance } from "../mpesa-balance.js";

const METHOD_CODE: Partial<Record<PaymentMethodKind, string>> = { [PaymentMethodKind.MPESA]: "mpesa", [PaymentMethodKind.CARD]: "card" };
/** A re-query runs the reconciler over at most this many due attempts (the one asked for is due first). */
const REQUERY_BATCH = 20;

/** WHERE clauses with numbered parameters, built one filter at a time. */
class Filters {
  readonly params: unknown[] = [];
  private readonly clauses: string[] = [];
  add(sql: string, ...values: unknown[]): void {
    let i = this.params.length;
    this.params.push(...values);
    this.clauses.push(sql.replace(/\?/g, () => `$${++i}`));
  }
  where(): string {
    return this.clauses.length ? `WHERE ${this.clauses.join(" AND ")}` : "";
  }
  next(value: unknown): string {
    this.params.push(value);
    return `$${this.params.length}`;
  }
}

interface CommonFilters {
  from?: Timestamp;
  to?: Timestamp;
  minAmountMinor: bigint;
  maxAmountMinor: bigint;
  resultCode: string;
  workerId: string;
}

function commonFilters(f: Filters, req: CommonFilters): void {
  if (req.from && req.to && timestampDate(req.to) <= timestampDate(req.from)) throw fieldError("to", "must be after from");
  if (req.maxAmountMinor && req.maxAmountMinor < req.minAmountMinor) throw fieldError("max_amount_minor", "must not be below min_amount_minor");
  if (req.from) f.add("created_at >= ?", timestampDate(req.from));
  if (req.to) f.add("created_at < ?", timestampDate(req.to));
  if (req.minAmountMinor) f.add("amount_minor >= ?", req.minAmountMinor.toString());
  if (req.maxAmountMinor) f.add("amount_minor <= ?", req.maxAmountMinor.toString());
  if (req.resultCode) f.add("result_code = ?", req.resultCode);
  if (req.workerId) f.add("worker_id = ?::uuid", req.workerId);
}

async function alertsFor(db: Queryable, column: "tip_id" | "payout_id", id: string) {
  const { rows } = await db.query<FraudAlertRow>(`SELECT * FROM payment.fraud_alerts WHERE ${column} = $1 ORDER BY created_at LIMIT 50`, [id]);
  return rows.map(fraudAlertMessage);
}

type Impl = ServiceImpl<typeof PaymentAdminService>;

/** The console's reads and searches: fraud rules, tips, payouts, one payment's detail, the M-Pesa balance. */
export function consoleHandlers(h: PaymentHandlerContext): Partial<Impl> {
  return {
    getFraudRules: getFraudRulesHandler(h),
    searchTips: searchTipsHandler(h),
    searchPayouts: searchPayoutsHandler(h),
    getPaymentDetail: getPaymentDetailHandler(h),
    checkMpesaBalance: checkMpesaBalanceHandler(h),
    getMpesaBalance: getMpesaBalanceHandler(h),
    requeryPayment: requeryPaymentHandler(h),
  };
}

function getFraudRulesHandler(h: PaymentHandlerContext): Impl["getFraudRules"] {
  return async () => {
    const { deps } = h;
    const cards = deps.cards ? deps.config().cards?.rules : undefined;
    return {
      rules: rulesInForce(deps.config().fraud, cards).map((r) => ({
        reason: FRAUD_REASON[r.reason],
        action: FRAUD_ACTION[r.action],
        description: r.description,
        limit: r.limit ?? 0,
        windowSeconds: BigInt(r.windowSeconds ?? 0),
        amount: r.amountMinor === undefined ? undefined : { currency: "KES", amountMinor: r.amountMinor },
        enabled: r.enabled,
        setting: r.setting ?? "",
      })),
    };
  };
}

function searchTipsHandler(h: PaymentHandlerContext): Impl["searchTips"] {
  return async (req) => {
    const { pool, tipOut } = h;
    const size = pageSize(req.page);
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const f = new Filters();
    commonFilters(f, req);
    if (req.status) f.add("status = ?", TIP_STATUS_CODE[req.status]);
    if (req.method) f.add("method = ?", METHOD_CODE[req.method]);
    if (cursor) f.add("(created_at, tip_id) < (?::timestamptz, ?::uuid)", cursor.at, cursor.id);
    const { rows } = await pool.query<TipRow & { page_at: string }>(
      `SELECT *, ${keysetTime("created_at")} AS page_at FROM payment.tips ${f.where()} ORDER BY created_at DESC, tip_id DESC LIMIT ${f.next(size + 1)}`,
      f.params,
    );
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.tip_id]);
    return {
      tips: items.map((t) => tipOut(t)),
      page: { nextPageToken },
    };
  };
}

function searchPayoutsHandler(h: PaymentHandlerContext): Impl["searchPayouts"] {
  return async (req) => {
    const { pool } = h;
    const size = pageSize(req.page);
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const f = new Filters();
    commonFilters(f, req);
    if (req.status) f.add("status = ?", PAYOUT_STATUS_CODE[req.status]);
    if (cursor) f.add("(created_at, payout_id) < (?::timestamptz, ?::uuid)", cursor.at, cursor.id);
    const { rows } = await pool.query<PayoutRow & { page_at: string }>(
      `SELECT *, ${keysetTime("created_at")} AS page_at FROM payment.payouts ${f.where()} ORDER BY created_at DESC, payout_id DESC LIMIT ${f.next(size + 1)}`,
      f.params,
    );
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.payout_id]);
    return {
      payouts: items.map(payoutMessage),
      page: { nextPageToken },
    };
  };
}

function getPaymentDetailHandler(h: PaymentHandlerContext): Impl["getPaymentDetail"] {
  return async (req) => {
    const { pool, tipOut } = h;
    if (req.subject.case === "tipId") {
      const tip = await loadTip(pool, req.subject.value);
      if (!tip) throw new NotFoundError("tip_id: no such tip");
      // Callbacks name the tip once matched; the C2B confirmation of a paybill tip carries its receipt.
      const { rows } = await pool.query(
        `SELECT * FROM payment.callbacks WHERE tip_id = $1 OR ($2::text IS NOT NULL AND external_reference = $2) OR ($3::text IS NOT NULL AND external_reference = $3)
          ORDER BY received_at LIMIT 100`,
        [tip.tip_id, tip.checkout_request_id ?? null, tip.mpesa_receipt ?? null],
      );
      return {
        tip: tipOut(tip),
        callbacks: rows.map(toCallback),
        alerts: await alertsFor(pool, "tip_id", tip.tip_id),
        ledgerEntryId: tip.credit_entry_id ?? "",
        ledgerCreditKind: tip.credit_kind ?? "",
      };
    }
    const payout = await loadPayout(pool, req.subject.value!);
    if (!payout) throw new NotFoundError("payout_id: no such payout");
    const { rows } = await pool.query("SELECT * FROM payment.callbacks WHERE payout_id = $1 ORDER BY received_at LIMIT 100", [payout.payout_id]);
    return {
      payout: payoutMessage(payout),
      callbacks: rows.map(toCallback),
      alerts: await alertsFor(pool, "payout_id", payout.payout_id),
      holdId: payout.hold_id ?? "",
      holdState: payout.hold_state,
      statusQueries: payout.status_queries,
    };
  };
}

function checkMpesaBalanceHandler(h: PaymentHandlerContext): Impl["checkMpesaBalance"] {
  return async (_req, ctx) => {
    const { deps } = h;
    return { checkId: await checkMpesaBalance(deps, ctx) };
  };
}

function getMpesaBalanceHandler(h: PaymentHandlerContext): Impl["getMpesaBalance"] {
  return async (req, ctx) => {
    const { deps } = h;
    return getMpesaBalance(deps, ctx, req.checkId);
  };
}

function requeryPaymentHandler(h: PaymentHandlerContext): Impl["requeryPayment"] {
  return async (req, ctx) => {
    const { deps, pool, tipOut } = h;
    if (req.subject.case === "tipId") {
      const tipId = req.subject.value;
      const tip = await loadTip(pool, tipId);
      if (!tip) throw new NotFoundError("tip_id: no such tip");
      if (tip.status !== "pending") throw new InvalidStateError(`tip_id: the tip is ${tip.status.replace(/_/g, " ")}: nothing to re-query`);
      if (tip.method !== "mpesa") throw new InvalidStateError("tip_id: only M-Pesa tips are re-queried here (card tips follow their provider's webhooks)");
      // Due now; the reconciler leases it (never two queries at once) and settles it exactly as a late callback would.
      await withTransaction(pool, async (tx) => {
        await tx.query("UPDATE payment.tips SET next_check_at = now() - interval '1 second' WHERE tip_id = $1 AND status = 'pending'", [tipId]);
        await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYMENT_REQUERIED, target: `tip:${tipId}`, userId: tip.worker_id ?? undefined });
      });
      await reconcileTips(deps, REQUERY_BATCH);
      return { tip: tipOut((await loadTip(pool, tipId))!) };
    }
    const payoutId = req.subject.value!;
    const payout = await loadPayout(pool, payoutId);
    if (!payout) throw new NotFoundError("payout_id: no such payout");
    if (payout.status !== "pending" && payout.status !== "resolving") {
      throw new InvalidStateError(`payout_id: the payout is ${payout.status.replace(/_/g, " ")}: nothing to re-query`);
    }
    // A status query, or the first send of one never sent: the reconciler never sends a payout twice.
    await withTransaction(pool, async (tx) => {
      await tx.query("UPDATE payment.payouts SET next_check_at = now() - interval '1 second' WHERE payout_id = $1 AND status IN ('pending', 'resolving')", [payoutId]);
      await auditAdminAction(tx, "payment", ctx, { action: AuditAction.PAYMENT_REQUERIED, target: `payout:${payoutId}`, userId: payout.worker_id });
    });
    await reconcilePayouts(deps, REQUERY_BATCH);
    return { payout: payoutMessage((await loadPayout(pool, payoutId))!) };
  };
}
