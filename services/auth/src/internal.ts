import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import type { AuthInternalService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import type { AuthCore } from "./core.js";
import { sameBytes, sha256 } from "./crypto.js";
import { signPartnerRequest } from "./partner.js";
import { KEY_COLUMNS, toPartnerKey } from "./admin.js";
import { getUser, USER_COLUMNS, roleName, toUser, type UserRow } from "./users.js";
import { audit, AuditAction } from "./audit.js";
import { clockOf, consumeOrRefuse, DependencyUnavailableError, InvalidStateError, isUuid, NotFoundError, PermissionDeniedError, type Queryable, RateLimitedError, UnauthenticatedError, withTransaction } from "@ttip/runtime";

/** Service-to-service lookups; the gateway never routes these. */
export function internalHandlers(core: AuthCore): Partial<ServiceImpl<typeof AuthInternalService>> {
  const { pool } = core.ctx;
  const refused = (why: string) => new UnauthenticatedError(`partner signature refused: ${why}`);
  return {
    async getUserById(req) {
      const user = await getUser(pool, req.userId);
      return { user: toUser(user), phone: `+${user.phone}` };
    },

    async grantVenueManagerRole(req) {
      return withTransaction(pool, async (tx) => {
        const user = await getUser(tx, req.userId, true);
        if (user.blocked_at) throw new InvalidStateError("user_id: this account is blocked");
        if (user.roles.includes("venue_manager")) return { granted: false };
        await tx.query("UPDATE auth.users SET roles = array_append(roles, 'venue_manager'), updated_at = now() WHERE user_id = $1", [req.userId]);
        await audit(tx, AuditAction.ROLES_CHANGED, {
          userId: req.userId,
          detail: `roles ${user.roles.join(",")} -> ${[...user.roles, "venue_manager"].join(",")}; a venue's manager invitation accepted`,
        });
        return { granted: true };
      });
    },

    async listUsersWithRoles(req) {
      const limit = req.limit || 50;
      // One row past the limit says whether there are more.
      const { rows } = await pool.query<UserRow>(
        `SELECT ${USER_COLUMNS} FROM auth.users WHERE roles && $1::text[] AND blocked_at IS NULL ORDER BY created_at, user_id LIMIT $2`,
        [req.roles.map(roleName), limit + 1],
      );
      return { users: rows.slice(0, limit).map(toUser), truncated: rows.length > limit };
    },

    async verifyPartnerSignature(req) {
      const timestamp = timestampDate(req.timestamp!);
      const skew = Math.abs(Date.now() - timestamp.getTime()) / 1000;
      if (skew > core.config.partnerReplayWindowSeconds) throw refused("timestamp outside the replay window");
      if (!isUuid(req.keyId)) throw refused("unknown key");
      const { rows } = await pool.query("SELECT key_id::text, partner_name, scopes, secret_hash, secret_sealed FROM auth.partner_api_keys WHERE key_id = $1 AND revoked_at IS NULL", [req.keyId]);
      const key = rows[0];
      if (!key) throw refused("unknown or revoked key");
      const secret = core.sealer.open(key.secret_sealed);
      if (!sameBytes(sha256(secret), key.secret_hash)) throw refused("key material does not match"); // tampered row
      const expected = signPartnerRequest(secret, req.method, req.path, req.timestamp!.seconds, req.bodySha256, req.nonce);
      if (!sameBytes(Buffer.from(expected, "hex"), Buffer.from(req.signature, "hex"))) throw refused("signature does not match");
      // A nonce is spent once inside the window (kept in Redis twice as long);
      // without one, the signature is: the same bytes in the same second are a replay.
      // A store that cannot answer is not a replay: UNAVAILABLE, and the partner retries.
      // Under the key's own id: the request's, in capitals, is the same key (a uuid compares so) and is not signed.
      const spent = req.nonce ? `${key.key_id}:nonce:${req.nonce}` : `${key.key_id}:${req.signature}`;
      await consumeOrRefuse(core.limits.partnerReplay, spent, "this signed request was already used").catch((err) => {
        if (err instanceof RateLimitedError) throw refused(req.nonce ? "request replayed (this nonce was already used)" : "request replayed");
        throw new DependencyUnavailableError("cannot check for replays right now; retry shortly");
      });
      await pool.query("UPDATE auth.partner_api_keys SET last_used_at = now() WHERE key_id = $1", [key.key_id]);
      return { partnerName: key.partner_name, scopes: key.scopes };
    },

    async getPartnerApiKey(req) {
      const { rows } = await pool.query(`SELECT ${KEY_COLUMNS} FROM auth.partner_api_keys WHERE key_id = $1`, [req.keyId]);
      if (!rows[0]) throw new NotFoundError(`key_id: no partner key ${req.keyId}`);
      return { key: toPartnerKey(rows[0]) };
    },

    async verifyStepUpToken(req) {
      // Spent on first use, on the payout it names (spend_key, with its amount and number when given): a
      // payout proof cannot be replayed for another payout, nor for the same key with other terms. The same
      // payout's retry is accepted: its caller may have given up before we answered (payment waits 5 s),
      // and we may have spent the token after that.
      const terms = [sha256(req.stepUpToken), req.userId, req.purpose, req.spendKey || null, req.spendAmount?.amountMinor ?? null, req.spendAmount?.currency || null,
        req.spendPhone ? sha256(req.spendPhone) : null, new Date(clockOf(core.ctx).now())];
      const { rows } = await pool.query(
        `UPDATE auth.step_up_tokens t SET used_at = COALESCE(t.used_at, now()), spend_key = COALESCE(t.spend_key, $4),
             spend_amount_minor = CASE WHEN t.used_at IS NULL THEN $5 ELSE t.spend_amount_minor END,
             spend_currency = CASE WHEN t.used_at IS NULL THEN $6 ELSE t.spend_currency END,
             spend_phone_sha256 = CASE WHEN t.used_at IS NULL THEN $7 ELSE t.spend_phone_sha256 END
           FROM auth.devices d
          WHERE t.token_hash = $1 AND t.user_id = $2 AND t.purpose = $3 AND t.expires_at > $8
            AND (t.used_at IS NULL OR (t.spend_key = $4 AND ${SAME_TERMS}))
            AND d.device_id = t.device_id AND d.removed_at IS NULL
            -- A proof made before its user was blocked approves nothing after.
            AND NOT EXISTS (SELECT 1 FROM auth.users u WHERE u.user_id = t.user_id AND u.blocked_at IS NOT NULL)
          RETURNING t.device_id`,
        terms,
      );
      if (!rows[0]) throw await stepUpRefusal(pool, terms, req.spendKey, req.purpose);
      return { deviceId: rows[0].device_id };
    },
  };
}

/** Whether a token spent on a key was spent on the terms asked now ($5-$7); NULL terms stored: bound to the key alone (0007). */
const SAME_TERMS = `(t.spend_amount_minor IS NULL OR (t.spend_amount_minor = $5 AND t.spend_currency = $6))
            AND (t.spend_phone_sha256 IS NULL OR t.spend_phone_sha256 = $7)`;

/** What a token of each purpose is spent on, as a refusal names it (a purpose auth does not word: "request"). */
const SPENT_ON: Readonly<Record<string, string>> = { payout: "payout", payout_number: "payout number change" };

/**
 * Why a step-up token was refused: spent under this spend key on another amount or number (naming
 * spend_amount or spend_phone: the caller changed the payout or the number, not the proof), else invalid,
 * expired or spent on another payout (or number change). Read only once refused.
 */
async function stepUpRefusal(pool: Queryable, terms: unknown[], spendKey: string, purpose: string): Promise<PermissionDeniedError> {
  const blocked = await pool.query("SELECT 1 FROM auth.users WHERE user_id = $1 AND blocked_at IS NOT NULL", [terms[1]]);
  if (blocked.rowCount) return new PermissionDeniedError("this account is blocked: contact support");
  const { rows } = await pool.query<{ same_amount: boolean; same_phone: boolean }>(
    `SELECT (t.spend_amount_minor IS NULL OR (t.spend_amount_minor = $5 AND t.spend_currency = $6)) AS same_amount,
            (t.spend_phone_sha256 IS NULL OR t.spend_phone_sha256 = $7) AS same_phone
       FROM auth.step_up_tokens t
      WHERE t.token_hash = $1 AND t.user_id = $2 AND t.purpose = $3 AND t.expires_at > $8 AND t.used_at IS NOT NULL AND t.spend_key = $4`,
    terms,
  );
  const spent = rows[0];
  const what = SPENT_ON[purpose] ?? "request";
  if (spent && !spent.same_amount) return new PermissionDeniedError(`spend_amount: the step-up token was spent on this ${what}'s key for another amount; another amount needs a new step-up`);
  if (spent && !spent.same_phone) {
    if (purpose === "payout_number") return new PermissionDeniedError("spend_phone: the step-up token was spent on another payout number; this number needs a new step-up");
    return new PermissionDeniedError(`spend_phone: the step-up token was spent on this ${what}'s key for another number; another number needs a new step-up`);
  }
  return new PermissionDeniedError(`step-up token is invalid, expired or already spent${spendKey ? ` on another ${what}` : ""}`);
}
