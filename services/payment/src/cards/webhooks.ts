// Card provider webhooks on the payment service's own HTTP port, the way the
// Daraja callbacks come in: stored raw first, then verified (Stripe-Signature
// with its tolerance), then applied once per event id.
import type http from "node:http";
import type http2 from "node:http2";
import { timeOrderedUuid, type HttpFilter, type Queryable } from "@ttip/runtime";
import type { Deps } from "../tips.js";
import { applyDisputeClosed, applyDisputeOpened, applyRefunded, applyRefundFailed } from "./aftercare.js";
import { applyCardPayment } from "./tips.js";
import { WebhookVerificationError, type CardEvent, type CardProvider, type CardProviderName } from "./provider.js";

const MAX_BODY = 256 * 1024;
const ROUTES: Record<string, CardProviderName> = { "/stripe/webhook": "stripe", "/paypal/webhook": "paypal" };

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

export function cardWebhookFilter(deps: Deps): HttpFilter {
  return (req, res) => {
    const path = (req.url ?? "").split("?")[0];
    const provider = ROUTES[path];
    if (!provider) return false;
    void handle(deps, provider, req, res, path).catch((err) => {
      deps.ctx.logger.error({ err, path }, "card webhook handling failed");
      reply(res, 500, { error: "temporary failure; retry" });
    });
    return true;
  };
}

function reply(res: Res, status: number, body: unknown) {
  if (res.headersSent) return;
  (res as http.ServerResponse).writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

async function handle(deps: Deps, providerName: CardProviderName, req: Req, res: Res, path: string): Promise<void> {
  const { pool, logger } = deps.ctx;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
  }
  const body = Buffer.concat(chunks);
  const callbackId = timeOrderedUuid(); // in time order, as callbacks.ts' (payment.callbacks_pkey)
  // Stored before anything looks at it: nothing a provider (or anyone) sent is lost.
  await pool.query(
    "INSERT INTO payment.callbacks (callback_id, source, path, remote_address, raw_body) VALUES ($1, $2, $3, $4, $5)",
    [callbackId, providerName, path, req.socket?.remoteAddress ?? "", body],
  );
  const outcome = (o: string, extra: { ref?: string; tipId?: string; matched?: boolean } = {}) =>
    pool.query("UPDATE payment.callbacks SET outcome = $2, external_reference = COALESCE($3, external_reference), tip_id = $4, matched = $5 WHERE callback_id = $1",
      [callbackId, o, extra.ref ?? null, extra.tipId ?? null, extra.matched ?? false]);
  if (req.method !== "POST") {
    await outcome("bad_method");
    return reply(res, 405, { error: "POST only" });
  }
  if (size > MAX_BODY) {
    await outcome("too_large");
    return reply(res, 413, { error: "too large" });
  }
  const provider = deps.cards?.provider(providerName);
  if (!provider) {
    await outcome("not_configured");
    return reply(res, 404, { error: `${providerName} is not configured` });
  }
  let event: CardEvent;
  try {
    event = await provider.parseWebhook(body, req.headers as Record<string, string | string[] | undefined>);
  } catch (err) {
    if (!(err instanceof WebhookVerificationError)) throw err;
    await outcome("bad_signature");
    logger.warn({ provider: providerName, reason: err.message }, "card webhook refused: not verified");
    return reply(res, 400, { error: "signature verification failed" });
  }
  // Once per event id: a redelivery of an applied event changes nothing; one arriving while another
  // delivery applies the event is refused (the provider sends it again), not applied beside it.
  const claim = await claimCardEvent(pool, providerName, event, callbackId);
  if (claim.state === "applied") {
    await outcome("duplicate", { ref: event.eventId, matched: true });
    return reply(res, 200, { received: true, duplicate: true });
  }
  if (claim.state === "being_applied") {
    await outcome("being_applied", { ref: event.eventId, matched: true });
    return reply(res, 409, { error: "another delivery of this event is being applied; send it again later" });
  }
  const held = claim.until;
  const { result, tipId } = await applyCardEvent(deps, provider, event).catch(async (err: unknown) => {
    // Not applied: the next delivery may claim it at once, unless this one's claim lapsed meanwhile and
    // another delivery holds the event now (its claim is its own to let go).
    await pool.query("UPDATE payment.card_events SET claimed_until = NULL WHERE provider = $1 AND event_id = $2 AND claimed_until = $3::timestamptz",
      [providerName, event.eventId, held]).catch(() => undefined);
    throw err;
  });
  // Marked by the first delivery whose apply finished, whether or not it still holds the claim: the apply posts
  // once by the provider's ids (payment, refund, dispute), so a second apply, of a delivery that claimed the event
  // after this one's claim lapsed, moves no money, and the event is applied once either finished. A later mark
  // would only write over the time and outcome of the one that applied it.
  await pool.query("UPDATE payment.card_events SET applied_at = now(), outcome = $3, tip_id = $4 WHERE provider = $1 AND event_id = $2 AND applied_at IS NULL",
    [providerName, event.eventId, result, tipId ?? null]);
  await outcome(result, { ref: event.eventId, tipId, matched: result !== "unknown" });
  return reply(res, 200, { received: true });
}

/** How long a delivery holds its event's claim: past it, a delivery whose process died no longer holds the event back. */
const CARD_EVENT_CLAIM_MS = 120_000;

/**
 * A delivery's claim on its event. `until` (claimed_until as PostgreSQL's text, to the microsecond) names
 * the claim: a later claim is taken only once this one has lapsed (or was let go), at now() + the lease, so
 * it is always later; no two claims of one event share it.
 */
type CardEventClaim = { state: "claimed"; until: string } | { state: "applied" } | { state: "being_applied" };

/**
 * Claims an event for this delivery, in one statement: recorded and claimed if new; claimed if unapplied and
 * unclaimed (or its claim lapsed); otherwise answers whether it was applied or another delivery holds it.
 */
async function claimCardEvent(pool: Queryable, providerName: string, event: CardEvent, callbackId: string): Promise<CardEventClaim> {
  const { rows: [claimed] } = await pool.query<{ until: string }>(
    `INSERT INTO payment.card_events (provider, event_id, type, callback_id, claimed_until)
     VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::double precision / 1000))
     ON CONFLICT (provider, event_id) DO UPDATE SET claimed_until = EXCLUDED.claimed_until
      WHERE payment.card_events.applied_at IS NULL AND (payment.card_events.claimed_until IS NULL OR payment.card_events.claimed_until < now())
     RETURNING claimed_until::text AS until`,
    [providerName, event.eventId, event.type, callbackId, CARD_EVENT_CLAIM_MS],
  );
  if (claimed) return { state: "claimed", until: claimed.until };
  const { rows } = await pool.query<{ applied: boolean }>("SELECT applied_at IS NOT NULL AS applied FROM payment.card_events WHERE provider = $1 AND event_id = $2",
    [providerName, event.eventId]);
  return rows[0]?.applied ? { state: "applied" } : { state: "being_applied" };
}

/** Applies one verified event; each branch is idempotent by itself too (state checks, ledger keys). */
export async function applyCardEvent(deps: Deps, provider: CardProvider, event: CardEvent): Promise<{ result: string; tipId?: string }> {
  const tipOf = async (paymentId: string, chargeId?: string) =>
    (await deps.ctx.pool.query<{ tip_id: string }>("SELECT tip_id FROM payment.tips WHERE provider_payment_id = $1 OR provider_charge_id = $2 LIMIT 1",
      [paymentId || null, chargeId || null])).rows[0]?.tip_id;
  switch (event.kind) {
    case "payment":
    case "payment_failed":
      return { result: await applyCardPayment(deps, provider, event.payment), tipId: await tipOf(event.payment.id) };
    case "refunded":
      return { result: await applyRefunded(deps, event), tipId: await tipOf(event.paymentId, "chargeId" in event ? event.chargeId : undefined) };
    case "refund_failed":
      return { result: await applyRefundFailed(deps, event), tipId: await tipOf(event.paymentId, event.chargeId) };
    case "dispute_opened":
      return { result: await applyDisputeOpened(deps, event), tipId: await tipOf(event.paymentId, "chargeId" in event ? event.chargeId : undefined) };
    case "dispute_closed":
      return { result: await applyDisputeClosed(deps, event), tipId: await tipOf(event.paymentId, "chargeId" in event ? event.chargeId : undefined) };
    default:
      return { result: "ignored" };
  }
}
