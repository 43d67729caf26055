// Payment's business figures on /metrics, beside the runtime's gRPC, outbox and pool ones.
import type { Metrics, Queryable } from "@ttip/runtime";

/** payment's metrics on a registry, made once per registry: every tip created and credited counts on them. */
export function paymentMetrics(m: Metrics): PaymentMetrics {
  let made = byRegistry.get(m);
  if (!made) byRegistry.set(m, (made = makePaymentMetrics(m)));
  return made;
}

const byRegistry = new WeakMap<Metrics, PaymentMetrics>();

function makePaymentMetrics(m: Metrics) {
  return {
    /** Tips by how they ended: created, succeeded (credited to the worker), held (suspense), failed, expired. Counted per tip: a family (no label hash per inc). */
    tips: m.counterFamily("ttip_payment_tips_total", "Tips by status reached, and payment method.", ["status", "method"]),
    /** What succeeded tips were worth, in whole shillings. */
    amounts: m.histogramFamily("ttip_payment_tip_amount_kes", "Amounts of credited tips, in KES.", ["method"], [10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000]),
    /** From the callback (or query) deciding success to the wallet entry recorded. */
    creditLatency: m.histogramFamily(
      "ttip_payment_callback_to_credit_seconds",
      "From the M-Pesa outcome that decided a tip's success to its wallet credit recorded.",
      ["method"],
      [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    ),
    /** Each pending tip a reconciliation pass looked at: settled by STK query, expired, still pending, or the query failed. */
    reconciliation: m.counter("ttip_payment_stk_reconciliation_total", "Tips looked at by STK reconciliation, by outcome.", ["outcome"]),
    payouts: m.counter("ttip_payment_payouts_total", "B2C payouts by status reached: requested, succeeded, failed, on_hold.", ["status"]),
    /** Paybill/till calls: validation by result code, confirmation by outcome (credited, stk_tip, duplicate, suspense, repeat, held). */
    c2b: m.counter("ttip_payment_c2b_total", "C2B validations and confirmations, by kind and result.", ["kind", "result"]),
    /** How long validation took to answer (Safaricom waits about 8 s). */
    c2bValidationSeconds: m.histogram("ttip_payment_c2b_validation_seconds", "Time to answer a C2B validation.", [], [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8]),
    /** USSD requests by the kind of answer: CON (menu goes on) or END. */
    ussd: m.counter("ttip_payment_ussd_requests_total", "USSD requests answered, by answer kind (con, end).", ["answer"]),
  };
}

export type PaymentMetrics = ReturnType<typeof makePaymentMetrics>;

const watched = new WeakSet<Metrics>();

/**
 * Reports at each scrape how long the oldest paid tip has waited for its wallet credit
 * (payment.uncredited), by method, 0 when none waits. The credit latency histogram is observed
 * only when a credit lands: while the wallet refuses or is down it shows nothing; this grows.
 * Read from the table, so every replica reports the same; once per registry.
 */
export function watchUncredited(m: Metrics, pool: Queryable): void {
  if (watched.has(m)) return;
  watched.add(m);
  const oldest = m.gauge("ttip_payment_oldest_uncredited_seconds", "Age of the oldest paid tip not yet credited to its wallet (0 when none), by method.", ["method"]);
  (oldest as unknown as { collect?: () => Promise<void> }).collect = async () => {
    try {
      const { rows } = await pool.query<{ method: string; age: number }>(
        `SELECT method, COALESCE(EXTRACT(EPOCH FROM now() - min(completed_at)), 0)::float8 AS age FROM payment.uncredited GROUP BY method`,
      );
      const age = new Map(rows.map((r) => [r.method, r.age]));
      for (const method of ["mpesa", "card"]) oldest.set({ method }, age.get(method) ?? 0);
    } catch {
      // The database is unreachable: report nothing rather than stale figures.
      oldest.reset();
    }
  };
}
