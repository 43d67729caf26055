import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { claimIdempotencyKey, ConcurrentChangeError, emitEvent, type Queryable, decodePageToken, decodeTimeIdToken, fieldError, idempotentRequest, InvalidStateError, isUuid, keysetPage, keysetTime, lockForTransaction, microsTimestamp, NotFoundError, optionalTimestamp, pageSize, positionParts, readPartnerUsage, requireCaller, withTransaction } from "@ttip/runtime";
import { activeAdminExists, ADMIN_ROLE_LOCK } from "./bootstrap.js";
import { AuditEventSchema, PartnerApiKeySchema, type PartnerApiKey } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import type { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { UserBlockChangedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { audit, AuditAction } from "./audit.js";
import type { AuthCore } from "./core.js";
import { opaqueToken, sha256 } from "./crypto.js";
import { clientAddressOf } from "./request.js";
import { forgetSessions, revokeSessions, SESSION_COLUMNS, sessionMessage } from "./sessions.js";
import { getUser, USER_COLUMNS, roleName, toUser } from "./users.js";


interface KeyRow {
  key_id: string;
  partner_name: string;
  scopes: string[];
  prefix: string;
  created_at: Date;
  revoked_at: Date | null;
  last_used_at: Date | null;
}

/** A KeyRow's columns (named, so the statements reading them are prepared). */
export const KEY_COLUMNS = "key_id, partner_name, scopes, prefix, created_at, revoked_at, last_used_at";

type Impl = ServiceImpl<typeof AuthAdminService>;

export function toPartnerKey(r: KeyRow): PartnerApiKey {
  return create(PartnerApiKeySchema, {
    keyId: r.key_id,
    partnerName: r.partner_name,
    scopes: r.scopes,
    prefix: r.prefix,
    createdAt: timestampFromDate(r.created_at),
    revokedAt: optionalTimestamp(r.revoked_at),
    lastUsedAt: optionalTimestamp(r.last_used_at),
  });
}

/** The audit log's position: the sequence number of the last event served. */
const decodeSeqToken = (token: string | undefined) => decodePageToken(token, ([seq, ...rest]) => (rest.length ? undefined : positionParts.integer(seq)));

/** Accounts, partner keys, the audit log and key rotation. The gateway also demands an allow-listed network. */
export function adminHandlers(core: AuthCore): Partial<ServiceImpl<typeof AuthAdminService>> {
  return {
    getUser: getUserHandler(core),
    setUserRoles: setUserRolesHandler(core),
    unlockUser: unlockUserHandler(core),
    issuePartnerApiKey: issuePartnerApiKeyHandler(core),
    listPartnerApiKeys: listPartnerApiKeysHandler(core),
    getPartnerKeyUsage: getPartnerKeyUsageHandler(core),
    revokePartnerApiKey: revokePartnerApiKeyHandler(core),
    listAuditEvents: listAuditEventsHandler(core),
    ...consoleHandlers(core),
    rotateSigningKey: rotateSigningKeyHandler(core),
  };
}

function getUserHandler(core: AuthCore): Impl["getUser"] {
  const { pool } = core.ctx;
  return async function (req) {
    return { user: toUser(await getUser(pool, req.userId)) };
  };
}

function setUserRolesHandler(core: AuthCore): Impl["setUserRoles"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const admin = requireCaller(ctx);
    const roles = req.roles.map(roleName);
    const { user, revoked } = await withTransaction(pool, async (tx) => {
      // The console locks everyone out once no admin is left: the last one keeps the role.
      await lockForTransaction(tx, ADMIN_ROLE_LOCK);
      const before = await getUser(tx, req.userId, true);
      const expected = req.expectedRoles.map(roleName);
      // Saved from a screen read before another change: it would take away a role granted since.
      if (expected.length && !sameRoles(before.roles, expected) && !sameRoles(before.roles, roles)) {
        throw new ConcurrentChangeError(`expected_roles: the user's roles changed since they were read (now ${before.roles.join(", ") || "none"}); read them again, then save`);
      }
      if (before.roles.includes("admin") && !roles.includes("admin")) {
        if (!(await activeAdminExists(tx, req.userId))) throw new InvalidStateError("roles: this is the last admin; make someone else admin first");
      }
      const { rows } = await tx.query(`UPDATE auth.users SET roles = $2, updated_at = now() WHERE user_id = $1 RETURNING ${USER_COLUMNS}`, [req.userId, roles]);
      // Tokens carry roles: losing one ends the sessions that carry it.
      const lost = before.roles.filter((r) => !roles.includes(r));
      const revoked = lost.length ? await revokeSessions(tx, "user_id = $1", [req.userId], "roles changed") : [];
      await audit(tx, AuditAction.ROLES_CHANGED, {
        userId: req.userId, actorUserId: admin.subject, ip: clientAddressOf(ctx),
        detail: `roles ${before.roles.join(",")} -> ${roles.join(",")}; ${revoked.length} sessions revoked`,
      });
      return { user: rows[0], revoked };
    });
    await forgetSessions(core, revoked);
    return { user: toUser(user) };
  };
}

const sameRoles = (a: string[], b: string[]) => a.length === b.length && a.every((r) => b.includes(r));

function unlockUserHandler(core: AuthCore): Impl["unlockUser"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const admin = requireCaller(ctx);
    await withTransaction(pool, async (tx) => {
      await getUser(tx, req.userId, true);
      await tx.query("UPDATE auth.users SET locked_until = NULL, pin_failures = 0, lockouts = 0, updated_at = now() WHERE user_id = $1", [req.userId]);
      await audit(tx, AuditAction.UNLOCK, { userId: req.userId, actorUserId: admin.subject, ip: clientAddressOf(ctx), detail: req.reason });
    });
    return {};
  };
}

function issuePartnerApiKeyHandler(core: AuthCore): Impl["issuePartnerApiKey"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const admin = requireCaller(ctx);
    const scopes = [...req.scopes].sort();
    // A retry may list the scopes in another order: the same request.
    const idempotent = idempotentRequest("auth", ctx, { ...req, scopes });
    const secret = opaqueToken("ttip_sk");
    const keyId = randomUUID();
    const row = await withTransaction(pool, async (tx) => {
      // A retry of the same request gets the same key (and secret) back; a different request under the key is refused.
      const firstId = await claimIdempotencyKey(tx, idempotent, keyId);
      if (firstId) return (await tx.query(`SELECT ${KEY_COLUMNS}, secret_sealed FROM auth.partner_api_keys WHERE key_id = $1`, [firstId])).rows[0];
      const { rows } = await tx.query(
        `INSERT INTO auth.partner_api_keys (key_id, partner_name, scopes, prefix, secret_hash, secret_sealed, idempotency_key, request_fingerprint, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ${KEY_COLUMNS}, secret_sealed`,
        [keyId, req.partnerName, scopes, secret.slice(0, 12), sha256(secret), core.sealer.seal(secret), req.idempotencyKey, idempotent.fingerprint, admin.subject],
      );
      await audit(tx, AuditAction.API_KEY_ISSUED, {
        actorUserId: admin.subject, ip: clientAddressOf(ctx), detail: `key ${keyId} for ${req.partnerName}: ${scopes.join(" ")}`, target: `partner_key:${keyId}`,
      });
      return rows[0];
    });
    return { key: toPartnerKey(row), secret: core.sealer.open(row.secret_sealed) };
  };
}

function listPartnerApiKeysHandler(core: AuthCore): Impl["listPartnerApiKeys"] {
  const { pool } = core.ctx;
  return async function (req) {
    const size = pageSize(req.page);
    const after = decodeTimeIdToken(req.page?.pageToken);
    const { rows } = await pool.query(
      `SELECT ${KEY_COLUMNS}, ${keysetTime("created_at")} AS page_at FROM auth.partner_api_keys
        WHERE $1::timestamptz IS NULL OR (created_at, key_id) > ($1::timestamptz, $2::uuid)
        ORDER BY created_at, key_id LIMIT $3`,
      [after?.at ?? null, after?.id ?? null, size + 1],
    );
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.key_id]);
    return { keys: items.map(toPartnerKey), page: { nextPageToken } };
  };
}

function getPartnerKeyUsageHandler(core: AuthCore): Impl["getPartnerKeyUsage"] {
  const { pool } = core.ctx;
  return async function (req) {
    const { rows } = await pool.query("SELECT 1 FROM auth.partner_api_keys WHERE key_id = $1", [req.keyId]);
    if (!rows[0]) throw new NotFoundError(`key_id: no partner key ${req.keyId}`);
    const days = await readPartnerUsage(core.ctx.cache, req.keyId, req.days);
    return { days: days.map((d) => ({ day: d.day, ok: BigInt(d.ok), clientErrors: BigInt(d.clientErrors), serverErrors: BigInt(d.serverErrors) })) };
  };
}

function revokePartnerApiKeyHandler(core: AuthCore): Impl["revokePartnerApiKey"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const admin = requireCaller(ctx);
    const row = await withTransaction(pool, async (tx) => {
      const found = await tx.query("SELECT revoked_at FROM auth.partner_api_keys WHERE key_id = $1 FOR UPDATE", [req.keyId]);
      if (!found.rows[0]) throw new NotFoundError(`partner key ${req.keyId} not found`);
      // Revoking twice changes nothing and is not audited twice.
      if (!found.rows[0].revoked_at) {
        await tx.query("UPDATE auth.partner_api_keys SET revoked_at = now() WHERE key_id = $1", [req.keyId]);
        await audit(tx, AuditAction.API_KEY_REVOKED, { actorUserId: admin.subject, ip: clientAddressOf(ctx), detail: `key ${req.keyId}`, target: `partner_key:${req.keyId}` });
      }
      return (await tx.query(`SELECT ${KEY_COLUMNS} FROM auth.partner_api_keys WHERE key_id = $1`, [req.keyId])).rows[0];
    });
    return { key: toPartnerKey(row) };
  };
}

function listAuditEventsHandler(core: AuthCore): Impl["listAuditEvents"] {
  const { pool } = core.ctx;
  return async function (req) {
    const size = pageSize(req.page);
    const before = decodeSeqToken(req.page?.pageToken);
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (sql: string, v: unknown) => {
      params.push(v);
      where.push(sql.replace("?", `$${params.length}`));
    };
    if (before !== undefined) add("seq < ?", before);
    if (req.userId) add("user_id = ?", req.userId);
    if (req.actorUserId) add("actor_user_id = ?", req.actorUserId);
    if (req.target) add("target = ?", req.target.trim());
    if (req.actions.length) add("action = ANY(?)", req.actions);
    if (req.from) add("occurred_at >= ?", timestampDate(req.from));
    if (req.to) add("occurred_at < ?", timestampDate(req.to));
    params.push(size + 1);
    const { rows } = await pool.query(
      `SELECT seq, audit_event_id, action, user_id, actor_user_id, ip_address, detail, occurred_at, target, service FROM auth.audit_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY seq DESC LIMIT $${params.length}`,
      params,
    );
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.seq]);
    return {
      events: items.map((r) =>
        create(AuditEventSchema, {
          auditEventId: r.audit_event_id,
          action: r.action,
          userId: r.user_id ?? "",
          actorUserId: r.actor_user_id ?? "",
          ipAddress: r.ip_address,
          detail: r.detail,
          occurredAt: timestampFromDate(r.occurred_at),
          target: r.target,
          service: r.service,
        }),
      ),
      page: { nextPageToken },
    };
  };
}

function rotateSigningKeyHandler(core: AuthCore): Impl["rotateSigningKey"] {
  const { pool } = core.ctx;
  return async function (_req, ctx) {
    const admin = requireCaller(ctx);
    const kid = await core.keys.rotate();
    await audit(pool, AuditAction.SIGNING_KEY_ROTATED, { actorUserId: admin.subject, ip: clientAddressOf(ctx), detail: `new key ${kid}` });
    core.ctx.logger.info({ kid, actor: admin.subject }, "signing key rotated");
    return { kid };
  };
}

/** A page of users is at most this many; each search is one bounded query. */
const MAX_SESSIONS_LISTED = 100;

/** Finding users, blocking them and ending their sessions, for the admin console. */
function consoleHandlers(core: AuthCore): Partial<ServiceImpl<typeof AuthAdminService>> {
  return {
    searchUsers: searchUsersHandler(core),
    blockUser: blockUserHandler(core),
    unblockUser: unblockUserHandler(core),
    listUserSessions: listUserSessionsHandler(core),
    revokeUserSessions: revokeUserSessionsHandler(core),
  };
}

function searchUsersHandler(core: AuthCore): Impl["searchUsers"] {
  const { pool } = core.ctx;
  return async function (req) {
    const size = pageSize(req.page);
    const after = decodeTimeIdToken(req.page?.pageToken);
    const q = req.query.trim();
    const params: unknown[] = [];
    const where: string[] = [];
    const add = (sql: string, ...v: unknown[]) => {
      let i = params.length;
      params.push(...v);
      where.push(sql.replace(/\?/g, () => `$${++i}`));
    };
    if (isUuid(q)) add("user_id = ?::uuid", q);
    else if (/^\+?[0-9 ]+$/.test(q)) {
      const digits = q.replace(/\D/g, "");
      if (digits.length < 3) throw fieldError("query", "give at least 3 digits of a phone number");
      // 07xx… as people type it is 2547xx… as stored.
      const national = digits.startsWith("0") ? `254${digits.slice(1)}` : digits;
      add("(phone LIKE ? OR phone LIKE ?)", `%${digits}%`, `%${national}%`);
    } else if (q) add("display_name ILIKE ?", `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
    if (after) add("(created_at, user_id) < (?::timestamptz, ?::uuid)", after.at, after.id);
    params.push(size + 1);
    const { rows } = await pool.query(
      `SELECT ${USER_COLUMNS}, ${keysetTime("created_at")} AS page_at FROM auth.users ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
        ORDER BY created_at DESC, user_id DESC LIMIT $${params.length}`,
      params,
    );
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.page_at, r.user_id]);
    return { users: items.map(toUser), page: { nextPageToken } };
  };
}

function blockUserHandler(core: AuthCore): Impl["blockUser"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const admin = requireCaller(ctx);
    const { user, revoked } = await withTransaction(pool, async (tx) => {
      // As SetUserRoles: two admins blocking each other at once, or one blocking the last other, leave one who can sign in.
      await lockForTransaction(tx, ADMIN_ROLE_LOCK);
      const before = await getUser(tx, req.userId, true);
      // The row's id, not the request's text: the same id in capitals passed a string comparison.
      if (before.user_id === admin.subject) throw new InvalidStateError("user_id: you cannot block yourself");
      if (before.blocked_at) return { user: before, revoked: [] };
      if (before.roles.includes("admin") && !(await activeAdminExists(tx, before.user_id))) {
        throw new InvalidStateError("user_id: this is the last admin who can sign in; make someone else admin first");
      }
      const { rows } = await tx.query(`UPDATE auth.users SET blocked_at = now(), blocked_reason = $2, updated_at = clock_timestamp() WHERE user_id = $1 RETURNING ${USER_COLUMNS}, ${CHANGED_US}`, [req.userId, req.reason]);
      const revoked = await revokeSessions(tx, "user_id = $1", [req.userId], "account blocked");
      await emitBlockChanged(tx, rows[0], true, req.reason, admin.subject);
      await audit(tx, AuditAction.USER_BLOCKED, { userId: req.userId, actorUserId: admin.subject, ip: clientAddressOf(ctx), detail: `${req.reason}; ${revoked.length} sessions revoked` });
      return { user: rows[0], revoked };
    });
    await forgetSessions(core, revoked);
    return { user: toUser(user), sessionsRevoked: revoked.length };
  };
}

/** The row's new updated_at in microseconds since the epoch (a Date would keep milliseconds). */
const CHANGED_US = "(extract(epoch FROM updated_at) * 1000000)::int8 AS changed_us";

/**
 * Told to payment (payouts held) and qr (codes stop or start taking tips), in the change's transaction. Its time is
 * the row's, taken after its lock (clock_timestamp, not the transaction's start), to the microsecond: a block and an
 * unblock racing are ordered as they committed.
 */
async function emitBlockChanged(tx: Queryable, row: { user_id: string; changed_us: bigint }, blocked: boolean, reason: string, admin: string) {
  await emitEvent(tx, "auth", UserBlockChangedSchema, { userId: row.user_id, blocked, reason, changedBy: admin, changedAt: microsTimestamp(row.changed_us) });
}

function unblockUserHandler(core: AuthCore): Impl["unblockUser"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const admin = requireCaller(ctx);
    const user = await withTransaction(pool, async (tx) => {
      const before = await getUser(tx, req.userId, true);
      if (!before.blocked_at) return before;
      const { rows } = await tx.query(`UPDATE auth.users SET blocked_at = NULL, blocked_reason = '', updated_at = clock_timestamp() WHERE user_id = $1 RETURNING ${USER_COLUMNS}, ${CHANGED_US}`, [req.userId]);
      await emitBlockChanged(tx, rows[0], false, req.reason, admin.subject);
      await audit(tx, AuditAction.USER_UNBLOCKED, { userId: req.userId, actorUserId: admin.subject, ip: clientAddressOf(ctx), detail: req.reason });
      return rows[0];
    });
    return { user: toUser(user) };
  };
}

function listUserSessionsHandler(core: AuthCore): Impl["listUserSessions"] {
  const { pool } = core.ctx;
  return async function (req) {
    await getUser(pool, req.userId);
    const { rows } = await pool.query(
      `SELECT ${SESSION_COLUMNS} FROM auth.sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
        ORDER BY created_at DESC LIMIT ${MAX_SESSIONS_LISTED}`,
      [req.userId],
    );
    return {
      sessions: rows.map((r) => sessionMessage(r)),
    };
  };
}

function revokeUserSessionsHandler(core: AuthCore): Impl["revokeUserSessions"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const admin = requireCaller(ctx);
    const revoked = await withTransaction(pool, async (tx) => {
      await getUser(tx, req.userId);
      const r = req.sessionId
        ? await revokeSessions(tx, "user_id = $1 AND session_id = $2", [req.userId, req.sessionId], `revoked by an admin: ${req.reason}`)
        : await revokeSessions(tx, "user_id = $1", [req.userId], `revoked by an admin: ${req.reason}`);
      if (req.sessionId && !r.length) throw new NotFoundError(`session_id: no live session ${req.sessionId} of this user`);
      await audit(tx, AuditAction.SESSION_REVOKED, { userId: req.userId, actorUserId: admin.subject, ip: clientAddressOf(ctx), detail: `${r.length} sessions: ${req.reason}` });
      return r;
    });
    await forgetSessions(core, revoked);
    return { revoked: revoked.length };
  };
}
