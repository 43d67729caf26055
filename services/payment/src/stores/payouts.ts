// Payouts as workers and the admin console read them; the payout flow's own statements live in payouts.ts.
// A row leaves the database here or in the flow only through payoutOf: past it, a payout is the domain's Payout.
import type { MoneyAmount, Queryable } from "@ttip/runtime";
import type { Cursor, PageRow } from "./page.js";
import { commonFilters, searchPage, workerPage, type CommonSearch } from "./search.js";

export type PayoutStatusCode = "pending" | "succeeded" | "failed" | "resolving" | "on_hold";
/** Where the B2C request stands: 'new' until it is claimed for sending, never sent again after. */
export type B2cState = "new" | "sending" | "sent" | "unknown" | "refused";
export type HoldState = "none" | "held" | "settled" | "released";

/** A payment.payouts row as the database returns it. */
export interface PayoutRow {
  payout_id: string;
  worker_id: string;
  idempotency_key: string;
  currency: string;
  amount_minor: bigint;
  transfer_fee_minor: bigint;
  phone: string;
  phone_masked: string;
  automatic: boolean;
  note?: string | null;
  status: PayoutStatusCode;
  b2c_state: B2cState;
  hold_id: string | null;
  hold_state: HoldState;
  settle_entry_id?: string | null;
  callback_token: string;
  conversation_id: string | null;
  result_code: string;
  result_message: string;
  mpesa_receipt: string | null;
  paid_minor?: bigint | string | null;
  reported_mpesa_receipt?: string | null;
  status_queries: number;
  created_at: Date;
  completed_at: Date | null;
}

/** A payout as the flow and the handlers work with it. */
export interface Payout {
  payoutId: string;
  workerId: string;
  idempotencyKey: string;
  amount: MoneyAmount;
  /** M-Pesa's B2C charge, settled with the hold. */
  transferFee: MoneyAmount;
  phone: string;
  phoneMasked: string;
  automatic: boolean;
  /** Told to the worker with the payout; empty when there is nothing to tell. */
  note: string;
  status: PayoutStatusCode;
  b2cState: B2cState;
  holdId: string | null;
  holdState: HoldState;
  /** The wallet entry that settled the hold; null until settled (and for payouts settled before it was kept). */
  settleEntryId: string | null;
  callbackToken: string;
  conversationId: string | null;
  resultCode: string;
  resultMessage: string;
  mpesaReceipt: string | null;
  /** What M-Pesa's statement shows paid, as an admin resolving a payout held for its amount said; null otherwise. */
  paidMinor: bigint | null;
  /** The receipt M-Pesa's result named, kept when support resolved the held payout with the statement's (mpesaReceipt); null otherwise. */
  reportedMpesaReceipt: string | null;
  statusQueries: number;
  createdAt: Date;
  completedAt: Date | null;
}

/** A payout with its keyset position in a page. */
export type PagedPayout = Payout & { pageAt: string };

/** The one mapping from a row to the domain's Payout. */
export function payoutOf(r: PayoutRow): Payout {
  return {
    payoutId: r.payout_id,
    workerId: r.worker_id,
    idempotencyKey: r.idempotency_key,
    amount: { currency: r.currency, amountMinor: BigInt(r.amount_minor) },
    transferFee: { currency: r.currency, amountMinor: BigInt(r.transfer_fee_minor) },
    phone: r.phone,
    phoneMasked: r.phone_masked,
    automatic: r.automatic,
    note: r.note ?? "",
    status: r.status,
    b2cState: r.b2c_state,
    holdId: r.hold_id,
    holdState: r.hold_state,
    settleEntryId: r.settle_entry_id ?? null,
    callbackToken: r.callback_token,
    conversationId: r.conversation_id,
    resultCode: r.result_code,
    resultMessage: r.result_message,
    mpesaReceipt: r.mpesa_receipt,
    paidMinor: r.paid_minor == null ? null : BigInt(r.paid_minor),
    reportedMpesaReceipt: r.reported_mpesa_receipt ?? null,
    statusQueries: Number(r.status_queries),
    createdAt: r.created_at,
    completedAt: r.completed_at,
  };
}

function pagedPayoutOf(r: PageRow<PayoutRow>): PagedPayout {
  return { ...payoutOf(r), pageAt: r.page_at };
}

export async function loadPayout(db: Queryable, payoutId: string): Promise<Payout | undefined> {
  const row = (await db.query<PayoutRow>("SELECT * FROM payment.payouts WHERE payout_id = $1", [payoutId])).rows[0];
  return row && payoutOf(row);
}

export async function searchPayouts(db: Queryable, s: CommonSearch, cursor: Cursor, limit: number): Promise<PagedPayout[]> {
  return (await searchPage<PayoutRow>(db, "payouts", "payout_id", commonFilters(s), cursor, limit)).map(pagedPayoutOf);
}

/**
 * An admin's re-query: a status query, or the first send of one never sent; due now for the reconciler, whose pass
 * reads due on the service's clock (`now`): due by the database's clock alone, a service clock behind it found it
 * not due, and the re-query answered the payout as it was, nothing asked.
 */
export async function makePayoutDue(tx: Queryable, payoutId: string, now: Date): Promise<void> {
  await tx.query("UPDATE payment.payouts SET next_check_at = $2::timestamptz - interval '1 second' WHERE payout_id = $1 AND status IN ('pending', 'resolving')", [payoutId, now]);
}

/** When the lease a reconciliation pass holds on the open payout ends; undefined when no pass holds it. */
export async function openPayoutLeasedUntil(db: Queryable, payoutId: string): Promise<Date | undefined> {
  const { rows } = await db.query<{ lease_until: Date }>(
    "SELECT lease_until FROM payment.payouts WHERE payout_id = $1 AND status IN ('pending', 'resolving') AND lease_until > now()", [payoutId]);
  return rows[0]?.lease_until;
}

/** A worker's payouts, filtered by status code (null = any), newest first. */
export async function workerPayouts(db: Queryable, workerId: string, status: string | null | undefined, cursor: Cursor, limit: number): Promise<PagedPayout[]> {
  return (await workerPage<PayoutRow>(db, "payouts", "payout_id", workerId, status, cursor, limit)).map(pagedPayoutOf);
}

/** The payout an earlier request of the worker's under this idempotency key made. */
export async function payoutByIdempotencyKey(db: Queryable, workerId: string, key: string): Promise<Payout | undefined> {
  const row = (await db.query<PayoutRow>("SELECT * FROM payment.payouts WHERE worker_id = $1 AND idempotency_key = $2", [workerId, key])).rows[0];
  return row && payoutOf(row);
}
