import { type ServiceImpl } from "@connectrpc/connect";
import { InvalidStateError, NotFoundError, withTransaction } from "@ttip/runtime";
import { Locale } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import type { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { audit, AuditAction } from "./audit.js";
import type { AuthCore } from "./core.js";
import { forgetSessions, requireSession, revokeSessions, SESSION_COLUMNS, sessionMessage, type SessionRow } from "./sessions.js";
import { getUser, USER_COLUMNS, toUser } from "./users.js";

/** A session row as cached in Redis (JSON): its times as ISO text. */
type CachedSession = SessionRow & { created_at: string; last_used_at: string };

/** Active sessions, from Redis when cached (every change to a user's sessions drops the entry). */
async function activeSessions(core: AuthCore, userId: string): Promise<CachedSession[]> {
  const { pool, cache } = core.ctx;
  const key = `auth:sessions:${userId}`;
  const cached = await cache.get(key);
  if (cached) return JSON.parse(cached) as CachedSession[];
  const { rows } = await pool.query(
    `SELECT ${SESSION_COLUMNS} FROM auth.sessions
      WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now() ORDER BY created_at DESC`,
    [userId],
  );
  const list = rows.map((r) => ({ ...r, created_at: r.created_at.toISOString(), last_used_at: r.last_used_at.toISOString() }));
  await cache.set(key, JSON.stringify(list), 300);
  return list;
}

type Impl = ServiceImpl<typeof AuthService>;

/** Profile, JWKS and the user's own sessions: one factory per RPC below. */
export function accountHandlers(core: AuthCore): Partial<ServiceImpl<typeof AuthService>> {
  return {
    getJwks: getJwksHandler(core),
    getMe: getMeHandler(core),
    updateProfile: updateProfileHandler(core),
    listSessions: listSessionsHandler(core),
    revokeSession: revokeSessionHandler(core),
    revokeAllSessions: revokeAllSessionsHandler(core),
  };
}

function getJwksHandler(core: AuthCore): Impl["getJwks"] {
  return async function () {
    return { jwksJson: JSON.stringify(await core.keys.jwks()) };
  };
}

function getMeHandler(core: AuthCore): Impl["getMe"] {
  const { pool } = core.ctx;
  return async function (_req, ctx) {
    const { caller } = await requireSession(core, ctx);
    return { user: toUser(await getUser(pool, caller.subject)) };
  };
}

function updateProfileHandler(core: AuthCore): Impl["updateProfile"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const { caller } = await requireSession(core, ctx);
    const { rows } = await pool.query(
      `UPDATE auth.users SET display_name = $2, photo_url = $3, locale = CASE WHEN $4 = 0 THEN locale ELSE $4 END,
              birth_year = CASE WHEN $5 = 0 THEN birth_year ELSE $5 END, updated_at = now()
        WHERE user_id = $1 RETURNING ${USER_COLUMNS}`,
      [caller.subject, req.displayName, req.photoUrl, req.locale === Locale.UNSPECIFIED ? 0 : req.locale, req.birthYear],
    );
    if (!rows[0]) throw new NotFoundError(`user ${caller.subject} not found`);
    return { user: toUser(rows[0]) };
  };
}

function listSessionsHandler(core: AuthCore): Impl["listSessions"] {
  return async function (_req, ctx) {
    const { caller, sessionId } = await requireSession(core, ctx);
    const sessions = await activeSessions(core, caller.subject);
    return {
      sessions: sessions.map((s) => sessionMessage(s, s.session_id === sessionId)),
    };
  };
}

function revokeSessionHandler(core: AuthCore): Impl["revokeSession"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const { caller, ip } = await requireSession(core, ctx);
    const revoked = await withTransaction(pool, async (tx) => {
      const owned = await tx.query("SELECT revoked_at FROM auth.sessions WHERE session_id = $1 AND user_id = $2", [req.sessionId, caller.subject]);
      // Someone else's session is as unknown as a missing one.
      if (!owned.rowCount) throw new NotFoundError(`session ${req.sessionId} not found`);
      const r = await revokeSessions(tx, "session_id = $1", [req.sessionId], "revoked by user");
      if (r.length) await audit(tx, AuditAction.SESSION_REVOKED, { userId: caller.subject, actorUserId: caller.subject, ip, detail: `session ${req.sessionId}` });
      return r;
    });
    await forgetSessions(core, revoked);
    return {};
  };
}

function revokeAllSessionsHandler(core: AuthCore): Impl["revokeAllSessions"] {
  const { pool } = core.ctx;
  return async function (req, ctx) {
    const { caller, sessionId, ip } = await requireSession(core, ctx);
    if (req.keepCurrent && !sessionId) throw new InvalidStateError("keep_current: this token names no session");
    const revoked = await withTransaction(pool, async (tx) => {
      const r = req.keepCurrent
        ? await revokeSessions(tx, "user_id = $1 AND session_id <> $2", [caller.subject, sessionId], "revoke all (kept current)")
        : await revokeSessions(tx, "user_id = $1", [caller.subject], "revoke all");
      await audit(tx, AuditAction.SESSION_REVOKED, { userId: caller.subject, actorUserId: caller.subject, ip, detail: `${r.length} sessions revoked` });
      return r;
    });
    await forgetSessions(core, revoked);
    return { revoked: revoked.length };
  };
}
