import { Code, createClient, type ServiceImpl } from "@connectrpc/connect";
import { asConnectError, callerHeaders, decodeTimeIdToken, DependencyUnavailableError, keysetPage, keysetTime, NotFoundError, pageSize, PermissionDeniedError, type Queryable, requireCaller, withTransaction } from "@ttip/runtime";
import { ConsentScope } from "@ttip/proto/ttip/auth/v1/partner_pb.js";
import type { PartnerConsentService, PartnerService } from "@ttip/proto/ttip/auth/v1/partner_service_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { audit, AuditAction } from "../audit.js";
import type { AuthCore } from "../core.js";
import { clientAddressOf } from "../request.js";
import { toConsent, type ConsentRow } from "./rows.js";
import { callingKey } from "./webhooks.js";

/** A ConsentRow's columns (named, so the statements are prepared), and where they come from. */
const CONSENT_COLUMNS = "c.worker_id, c.key_id, c.scopes, c.granted_at, c.revoked_at, k.partner_name";
const CONSENT_FROM = "FROM auth.partner_consents c JOIN auth.partner_api_keys k USING (key_id)";

/**
 * Refuses unless the worker holds a live consent with `scope` to this key.
 * Read from the table on every call, never cached: a revocation is effective
 * for the very next call.
 */
export async function requireConsent(db: Queryable, workerId: string, keyId: string, scope: ConsentScope): Promise<void> {
  const { rows } = await db.query(
    "SELECT 1 FROM auth.partner_consents WHERE worker_id = $1 AND key_id = $2 AND revoked_at IS NULL AND $3::smallint = ANY (scopes)",
    [workerId, keyId, scope],
  );
  if (!rows[0]) {
    throw new PermissionDeniedError(`consent ${ConsentScope[scope] ? `CONSENT_SCOPE_${ConsentScope[scope]}` : scope} missing: worker ${workerId} has not granted it to this key (or has revoked it)`);
  }
}

/** A worker grants, lists and withdraws partner keys' access to their payouts and statements. */
export function consentHandlers(core: AuthCore): Partial<ServiceImpl<typeof PartnerConsentService>> {
  const { pool } = core.ctx;
  const load = async (db: Queryable, workerId: string, keyId: string) =>
    (await db.query<ConsentRow>(`SELECT ${CONSENT_COLUMNS} ${CONSENT_FROM} WHERE c.worker_id = $1 AND c.key_id = $2`, [workerId, keyId])).rows[0];
  return {
    async grantPartnerConsent(req, ctx) {
      const worker = requireCaller(ctx);
      const scopes = [...new Set(req.scopes)].sort((a, b) => a - b);
      const row = await withTransaction(pool, async (tx) => {
        const key = await tx.query("SELECT 1 FROM auth.partner_api_keys WHERE key_id = $1 AND revoked_at IS NULL", [req.keyId]);
        if (!key.rows[0]) throw new NotFoundError(`key_id: no live partner key ${req.keyId}`);
        // A live consent is widened; a withdrawn one starts again from these scopes.
        await tx.query(
          `INSERT INTO auth.partner_consents (worker_id, key_id, scopes) VALUES ($1, $2, $3)
           ON CONFLICT (worker_id, key_id) DO UPDATE SET
             scopes = CASE WHEN partner_consents.revoked_at IS NULL
                        THEN ARRAY(SELECT DISTINCT s FROM unnest(partner_consents.scopes || EXCLUDED.scopes) s ORDER BY s)
                        ELSE EXCLUDED.scopes END,
             granted_at = CASE WHEN partner_consents.revoked_at IS NULL THEN partner_consents.granted_at ELSE now() END,
             revoked_at = NULL`,
          [worker.subject, req.keyId, scopes],
        );
        await audit(tx, AuditAction.PARTNER_CONSENT_GRANTED, {
          userId: worker.subject, actorUserId: worker.subject, ip: clientAddressOf(ctx),
          detail: `key ${req.keyId}: ${scopes.map((s) => ConsentScope[s]).join(" ")}`,
        });
        return load(tx, worker.subject, req.keyId);
      });
      return { consent: toConsent(row) };
    },

    async revokePartnerConsent(req, ctx) {
      const worker = requireCaller(ctx);
      const row = await withTransaction(pool, async (tx) => {
        const { rowCount } = await tx.query(
          "UPDATE auth.partner_consents SET revoked_at = now() WHERE worker_id = $1 AND key_id = $2 AND revoked_at IS NULL",
          [worker.subject, req.keyId],
        );
        const now = await load(tx, worker.subject, req.keyId);
        if (!now) throw new NotFoundError(`key_id: you have not granted partner key ${req.keyId} any consent`);
        // Withdrawing twice changes nothing and is audited once.
        if (rowCount) {
          await audit(tx, AuditAction.PARTNER_CONSENT_REVOKED, { userId: worker.subject, actorUserId: worker.subject, ip: clientAddressOf(ctx), detail: `key ${req.keyId}` });
        }
        return now;
      });
      return { consent: toConsent(row) };
    },

    async listPartnerConsents(req, ctx) {
      const worker = requireCaller(ctx);
      const size = pageSize(req.page);
      const after = decodeTimeIdToken(req.page?.pageToken);
      const { rows } = await pool.query<ConsentRow & { page_at: string }>(
        `SELECT ${CONSENT_COLUMNS}, ${keysetTime("c.granted_at")} AS page_at ${CONSENT_FROM}
          WHERE c.worker_id = $1 AND ($2::timestamptz IS NULL OR (c.granted_at, c.key_id) > ($2::timestamptz, $3::uuid))
          ORDER BY c.granted_at, c.key_id LIMIT $4`,
        [worker.subject, after?.at ?? null, after?.id ?? null, size + 1],
      );
      const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.key_id]);
      return { consents: items.map(toConsent), page: { nextPageToken } };
    },
  };
}

/**
 * A partner's reads of a consenting worker's payouts and statements. Payment
 * and wallet serve a worker their own; auth, having checked the consent, asks
 * them as that worker (a signed internal call, as the gateway makes).
 */
export function consentedReadHandlers(core: AuthCore): Partial<ServiceImpl<typeof PartnerService>> {
  const { pool, peers } = core.ctx;
  const asWorker = (workerId: string) => ({ headers: callerHeaders(workerId, "worker"), timeoutMs: 10_000 });
  return {
    async listWorkerPayouts(req, ctx) {
      const key = await callingKey(pool, ctx);
      await requireConsent(pool, req.workerId, key.keyId, ConsentScope.PAYOUTS);
      const res = await askedOfPeer(core, "payouts", () =>
        createClient(PaymentService, peers("payment")).listPayouts({ page: req.page, status: req.status }, asWorker(req.workerId)));
      return { payouts: res.payouts, page: res.page };
    },

    async getWorkerStatement(req, ctx) {
      const key = await callingKey(pool, ctx);
      await requireConsent(pool, req.workerId, key.keyId, ConsentScope.STATEMENTS);
      const statement = await askedOfPeer(core, "statement", () => createClient(WalletService, peers("wallet")).getStatement(
        { year: req.year, month: req.month, currency: req.currency, format: req.format },
        asWorker(req.workerId),
      ));
      return { statement };
    },
  };
}

/** A peer's refusals of the request itself, which name its field, reach the partner as they are. */
const REQUEST_REFUSALS = new Set([Code.InvalidArgument, Code.NotFound, Code.FailedPrecondition, Code.OutOfRange]);

/**
 * A read auth makes of a peer for a partner: its refusals of the request as they are; anything else (the peer out of
 * reach, its own fault) logged and told as UNAVAILABLE. Its text names internal addresses and services, and the
 * caller is outside.
 */
async function askedOfPeer<T>(core: AuthCore, what: string, read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    const e = asConnectError(err);
    if (REQUEST_REFUSALS.has(e.code)) throw e;
    core.ctx.logger.warn({ err }, `a partner's read of a worker's ${what} failed`);
    throw new DependencyUnavailableError(`the worker's ${what} cannot be read right now; retry shortly`);
  }
}
