import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { DependencyUnavailableError, hmacSha256, storableText, systemClock, withTransaction, type Clock, type Logger, type Metrics, type Pool, type Queryable } from "@ttip/runtime";
import { ConsentScope } from "@ttip/proto/ttip/auth/v1/partner_pb.js";
import type { WebhookConfig } from "../config.js";
import type { Sealer } from "../crypto.js";
import { DestinationRefused, pinnedLookup, resolveDestination, type Destination, type HostResolver } from "./destination.js";
import { deliveryColumns, type DeliveryRow } from "./rows.js";

/** The header the TypeScript, Go and Python SDKs' webhook verifiers read: "t=<unix seconds>,v1=<hex HMAC-SHA256>". */
export const WEBHOOK_SIGNATURE_HEADER = "x-ttip-webhook-signature";
export const WEBHOOK_DELIVERY_HEADER = "x-ttip-delivery-id";
/** Deliveries sent at once by one process; the rest wait for the next round. */
const MAX_IN_FLIGHT = 16;
/**
 * Of them, one key's at most: a key whose receivers hang (up to 10 subscriptions, each held to
 * the timeout) holds a quarter of the slots, never every key's deliveries behind its own.
 */
const MAX_IN_FLIGHT_PER_KEY = 4;
/** Due deliveries a claim looks at to fill its slots within each key's room: a busy key's oldest do not hide the others'. */
const CLAIM_LOOKAHEAD = 4;
/**
 * How long a destination's host may take to resolve at a send. The system resolver has no deadline
 * of its own (a partner's name server that never answers held the send, its slot and the lease
 * beyond their ends); within the lease, with the request's timeout after it.
 */
const RESOLVE_DEADLINE_MS = 4_000;
/**
 * When a send gets no answer (a timeout, a refused connection, a host that does not resolve), the
 * subscription's other pending deliveries wait as its retry does, this long at most: a receiver
 * that hangs is tried by the deliveries in flight, not by its whole backlog, each holding a
 * sending slot to the timeout. At most, so that one delivery the receiver hangs on (and answers
 * others) delays the rest by no more than this at each of its failures.
 */
const HOLD_BACK_MAX_MS = 60_000;
/** What is kept of an error or an answer, in the log. */
const MAX_ERROR_CHARS = 300;

/**
 * HMAC-SHA256 of "<t>.<body>" under the subscription's secret, as @ttip/sdk's verifyWebhook checks it; then under
 * each secret a rotation replaced that still signs (a v1= each: the verifiers accept the delivery if any matches).
 */
export function webhookSignature(secret: string, body: string, unixSeconds: number, ...previous: string[]): string {
  return [secret, ...previous].reduce((header, s) => `${header},v1=${hmacSha256(s, `${unixSeconds}.${body}`, "hex")}`, `t=${unixSeconds}`);
}

/** The wait before attempt n + 1 after n failed ones: base * 2^(n-1), at most the cap, less up to a fifth at random (replicas and partners recovering together do not all retry at once). */
export function retryDelayMs(failed: number, config: Pick<WebhookConfig, "retryBaseMs" | "retryCapMs">, random = Math.random): number {
  const exp = Math.min(config.retryCapMs, config.retryBaseMs * 2 ** Math.min(Math.max(failed - 1, 0), 30));
  return Math.round(exp * (1 - 0.2 * random()));
}

/** The claim's delivery columns, built once (the claim runs on every poll). */
const CLAIMED_COLUMNS = deliveryColumns("d");

interface Claimed extends DeliveryRow {
  url: string;
  secret_sealed: string;
  /** The secret a rotation replaced, while it still signs. */
  previous_secret_sealed: string | null;
  /** The secret before that one, while it still signs (rotated twice within its time). */
  older_secret_sealed: string | null;
  key_revoked: boolean;
  subscription_deleted: boolean;
  consent_held: boolean;
}

export interface SenderOptions {
  pool: Pool;
  sealer: Sealer;
  config: WebhookConfig;
  logger: Logger;
  metrics?: Metrics;
  resolve: HostResolver;
  /** When a retry falls due (the service's clock, so a test moves past a backoff instead of sleeping). */
  clock?: Clock;
}

/**
 * Sends due deliveries. A delivery is claimed by pushing its next attempt past
 * the request's timeout and counting the attempt, in a committed statement,
 * before the request is made: replicas never send the same attempt twice, and
 * a process that dies mid-request leaves it due again once the lease ends
 * (at-least-once; the receiver deduplicates by the event's id). The outcome is
 * written only if the claim is still this one.
 */
export class WebhookSender {
  private timer: NodeJS.Timeout | undefined;
  private kick: (() => void) | undefined;
  private running: Promise<void> | undefined;
  /** Sends started and not yet ended: at most MAX_IN_FLIGHT. */
  private readonly inFlight = new Set<Promise<void>>();
  /** Of them, by key: at most MAX_IN_FLIGHT_PER_KEY each. */
  private readonly inFlightByKey = new Map<string, number>();
  private stopped = false;
  private again = false;

  private readonly clock: Clock;

  constructor(private readonly o: SenderOptions) {
    this.clock = o.clock ?? systemClock;
  }

  start(): void {
    this.running = (async () => {
      while (!this.stopped) {
        try {
          // Each slot is refilled as its send ends: a receiver that never answers holds one slot until the
          // timeout, not a round of everyone's deliveries behind it.
          while (!this.stopped && this.inFlight.size < MAX_IN_FLIGHT && (await this.startDue()) > 0);
        } catch (err) {
          this.o.logger.warn({ err }, "webhook sender failed; will retry");
        }
        if (this.again) {
          this.again = false;
          continue;
        }
        await new Promise<void>((resolve) => {
          this.kick = resolve;
          this.timer = setTimeout(resolve, this.o.config.pollMs);
        });
        clearTimeout(this.timer);
        this.kick = undefined;
      }
      await Promise.all(this.inFlight);
    })();
  }

  /** Something became due now (a new event, a replay): look before the next poll. */
  wake(): void {
    this.again = true;
    this.kick?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.kick?.();
    await this.running;
  }

  /** Claims due deliveries for the free slots and starts sending them; returns how many. */
  private async startDue(): Promise<number> {
    const claimed = await this.claim(MAX_IN_FLIGHT - this.inFlight.size);
    for (const d of claimed) {
      this.inFlightByKey.set(d.key_id, (this.inFlightByKey.get(d.key_id) ?? 0) + 1);
      const sending: Promise<void> = this.send(d)
        .catch((err: unknown) => this.o.logger.warn({ err, deliveryId: d.delivery_id }, "webhook send failed; claimed again when its lease ends"))
        .finally(() => {
          this.inFlight.delete(sending);
          const left = this.inFlightByKey.get(d.key_id)! - 1;
          if (left > 0) this.inFlightByKey.set(d.key_id, left);
          else this.inFlightByKey.delete(d.key_id);
          this.wake();
        });
      this.inFlight.add(sending);
    }
    return claimed.length;
  }

  /** Claims and sends one round of due deliveries, waiting for them all; returns how many were sent. */
  async sendDue(): Promise<number> {
    const claimed = await this.claim(MAX_IN_FLIGHT);
    await Promise.all(claimed.map((d) => this.send(d)));
    return claimed.length;
  }

  /**
   * Claims up to `limit` due deliveries, oldest first, within each key's room (MAX_IN_FLIGHT_PER_KEY
   * less its sends in flight here): keys with none left are not looked at, and of the oldest due
   * ones a claim takes a key's first few only (FOR UPDATE admits no window function: ranked after).
   */
  private async claim(limit: number): Promise<Claimed[]> {
    const leaseMs = RESOLVE_DEADLINE_MS + this.o.config.timeoutMs + 1_000;
    const busy = [...this.inFlightByKey.keys()];
    const room = busy.map((k) => MAX_IN_FLIGHT_PER_KEY - this.inFlightByKey.get(k)!);
    const { rows } = await this.o.pool.query<Claimed>(
      `WITH candidates AS (
         SELECT delivery_id, key_id, next_attempt_at FROM auth.partner_webhook_deliveries
          WHERE status = 'pending' AND next_attempt_at <= $4
            AND key_id <> ALL (SELECT b.key_id FROM unnest($5::uuid[], $6::int[]) AS b(key_id, room) WHERE b.room <= 0)
          ORDER BY next_attempt_at LIMIT $1 * ${CLAIM_LOOKAHEAD} FOR UPDATE SKIP LOCKED),
       due AS (
         SELECT delivery_id FROM (
           SELECT c.delivery_id, c.next_attempt_at, c.key_id, row_number() OVER (PARTITION BY c.key_id ORDER BY c.next_attempt_at) AS nth
             FROM candidates c) ranked
          WHERE nth <= COALESCE((SELECT b.room FROM unnest($5::uuid[], $6::int[]) AS b(key_id, room) WHERE b.key_id = ranked.key_id), ${MAX_IN_FLIGHT_PER_KEY})
          ORDER BY next_attempt_at LIMIT $1)
       UPDATE auth.partner_webhook_deliveries d
          SET attempts = d.attempts + 1, budget_used = d.budget_used + 1,
              next_attempt_at = $4::timestamptz + make_interval(secs => $2::double precision / 1000)
         FROM due, auth.partner_webhook_subscriptions s, auth.partner_api_keys k
        WHERE d.delivery_id = due.delivery_id AND s.subscription_id = d.subscription_id AND k.key_id = d.key_id
       RETURNING ${CLAIMED_COLUMNS}, s.url, s.secret_sealed, CASE WHEN s.previous_secret_expires_at > $4 THEN s.previous_secret_sealed END AS previous_secret_sealed,
         CASE WHEN s.older_secret_expires_at > $4 THEN s.older_secret_sealed END AS older_secret_sealed, k.revoked_at IS NOT NULL AS key_revoked, s.deleted_at IS NOT NULL AS subscription_deleted,
         (d.worker_id IS NULL OR EXISTS (SELECT 1 FROM auth.partner_consents c WHERE c.worker_id = d.worker_id AND c.key_id = d.key_id
           AND c.revoked_at IS NULL AND $3::smallint = ANY (c.scopes))) AS consent_held`,
      [limit, leaseMs, ConsentScope.PAYOUTS, new Date(this.clock.now()), busy, room],
    );
    return rows;
  }

  private async send(d: Claimed): Promise<void> {
    // Checked when sending, not only when the event arrived: a revoked key, a deleted
    // subscription or a withdrawn consent stops what is still queued.
    const stop = d.key_revoked ? "the partner key was revoked" : d.subscription_deleted ? "the subscription was deleted" : !d.consent_held ? "the worker withdrew the consent" : "";
    if (stop) {
      await this.o.pool.query(
        `UPDATE auth.partner_webhook_deliveries SET status = 'failed', attempts = attempts - 1, last_error = $2 WHERE delivery_id = $1 AND attempts = $3`,
        [d.delivery_id, `not sent: ${stop}`, d.attempts],
      );
      return;
    }
    const started = new Date();
    const outcome = await this.post(d);
    // A NUL in a receiver's words failed the outcome's write: claimed again every lease, never given up on.
    outcome.error = storableText(outcome.error);
    const durationMs = Date.now() - started.getTime();
    const delivered = outcome.status >= 200 && outcome.status < 300;
    const gaveUp = !delivered && d.budget_used >= this.o.config.maxAttempts;
    const delay = retryDelayMs(d.budget_used, this.o.config);
    await withTransaction(this.o.pool, async (tx) => {
      // Only while the claim is still this one: not when the lease ran out and another
      // process claimed it, nor when an admin asked for a replay meanwhile (a delivered
      // answer still counts: the receiver has it).
      await tx.query(
        `UPDATE auth.partner_webhook_deliveries
            SET status = $3, last_response_status = $4, last_error = $5, replay_requested = false,
                delivered_at = CASE WHEN $3 = 'delivered' THEN now() ELSE delivered_at END,
                next_attempt_at = CASE WHEN $3 = 'pending' THEN $8::timestamptz + make_interval(secs => $6::double precision / 1000) ELSE next_attempt_at END
          WHERE delivery_id = $1 AND attempts = $2 AND (replay_requested = $7 OR $3 = 'delivered')`,
        [d.delivery_id, d.attempts, delivered ? "delivered" : gaveUp ? "failed" : "pending", outcome.status, outcome.error, delay, d.replay_requested, new Date(this.clock.now())],
      );
      if (outcome.status === 0 && !delivered) await holdBackSubscription(tx, d, new Date(this.clock.now() + Math.min(delay, HOLD_BACK_MAX_MS)));
      // The attempt happened whoever owns the outcome: it is logged either way.
      await tx.query(
        `INSERT INTO auth.partner_webhook_attempts (delivery_id, attempt, started_at, duration_ms, response_status, error, replay)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
        [d.delivery_id, d.attempts, started, durationMs, outcome.status, outcome.error, d.replay_requested],
      );
    });
    const outcomeLabel = delivered ? "delivered" : gaveUp ? "failed" : "retry";
    this.o.metrics?.counter("ttip_partner_webhook_attempts_total", "Partner webhook HTTP attempts, by outcome.", ["outcome"]).inc({ outcome: outcomeLabel });
    if (!delivered) this.o.logger.info({ deliveryId: d.delivery_id, attempt: d.attempts, status: outcome.status, error: outcome.error, gaveUp }, "webhook delivery not accepted");
  }

  private async post(d: Claimed): Promise<{ status: number; error: string }> {
    let secrets: string[];
    try {
      secrets = [d.secret_sealed, d.previous_secret_sealed, d.older_secret_sealed].filter((sealed) => sealed !== null).map((sealed) => this.o.sealer.open(sealed));
    } catch {
      return { status: 0, error: "the subscription's secret cannot be opened (AUTH_KEY_ENCRYPTION_SECRET changed?)" };
    }
    const unix = Math.floor(Date.now() / 1000);
    try {
      // Resolved and checked again now (the answer may have changed since the
      // subscription), and the request connects only to what was checked.
      const to = await resolveDestination(d.url, this.o.config, withDeadline(this.o.resolve, RESOLVE_DEADLINE_MS));
      const res = await postOnce(to, d.body, this.o.config.timeoutMs, {
        "content-type": "application/json",
        "user-agent": "ttip-webhooks/1",
        [WEBHOOK_SIGNATURE_HEADER]: webhookSignature(secrets[0], d.body, unix, ...secrets.slice(1)),
        [WEBHOOK_DELIVERY_HEADER]: d.delivery_id,
      });
      const ok = res.status >= 200 && res.status < 300;
      return { status: res.status, error: ok ? "" : `HTTP ${res.status}${res.text ? `: ${res.text}` : ""}`.slice(0, MAX_ERROR_CHARS) };
    } catch (err) {
      // DependencyUnavailableError: the host could not be resolved now (its code is gRPC's, not the network's).
      if (err instanceof DestinationRefused || err instanceof DependencyUnavailableError) return { status: 0, error: `not sent: ${err.message}`.slice(0, MAX_ERROR_CHARS) };
      const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
      const why = e.name === "TimeoutError" || e.name === "AbortError" ? `no answer within ${this.o.config.timeoutMs} ms` : (e.code ?? e.cause?.code ?? e.cause?.message ?? e.message);
      return { status: 0, error: String(why).slice(0, MAX_ERROR_CHARS) };
    }
  }
}

/** The subscription's other pending deliveries due before `until` wait until then (see HOLD_BACK_MAX_MS). */
async function holdBackSubscription(tx: Queryable, d: Claimed, until: Date): Promise<void> {
  await tx.query(
    `UPDATE auth.partner_webhook_deliveries SET next_attempt_at = $3
      WHERE subscription_id = $1 AND status = 'pending' AND next_attempt_at < $3 AND delivery_id <> $2`,
    [d.subscription_id, d.delivery_id, until],
  );
}

/** The resolver, failing with ETIMEOUT when it has not answered within `ms` (the lookup itself cannot be cancelled). */
function withDeadline(resolve: HostResolver, ms: number): HostResolver {
  return (hostname) =>
    new Promise((resolved, rejected) => {
      const timer = setTimeout(() => rejected(Object.assign(new Error(`no answer within ${ms} ms`), { code: "ETIMEOUT" })), ms);
      resolve(hostname).then(resolved, rejected).finally(() => clearTimeout(timer));
    });
}

/**
 * One POST to a checked destination, connecting only to its checked addresses.
 * A redirect is not an answer (it is not followed): the receiver must be at the
 * URL it registered. A 2xx is the answer as soon as its status arrives (its body
 * is not read); another status keeps the first 120 characters of its body, or what
 * came of it: a receiver that holds its body open does not turn an answer into
 * "no answer" at the timeout (a 200 sent again and again, a slot held meanwhile).
 */
function postOnce(to: Destination, body: string, timeoutMs: number, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  const request = to.url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    let answer: (() => void) | undefined;
    const req = request(
      to.url,
      { method: "POST", headers: { ...headers, "content-length": Buffer.byteLength(body) }, lookup: pinnedLookup(to.addresses), signal: AbortSignal.timeout(timeoutMs) },
      (res) => {
        const status = res.statusCode ?? 0;
        let text = "";
        answer = () => {
          resolve({ status, text: text.slice(0, 120) });
          res.destroy();
        };
        if (status >= 200 && status < 300) return answer();
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
          if (text.length >= 120) answer!();
        });
        res.on("end", answer);
        res.on("error", answer);
      },
    );
    req.on("error", (err) => (answer ? answer() : reject(err)));
    req.end(body);
  });
}
