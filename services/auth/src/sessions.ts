import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type HandlerContext } from "@connectrpc/connect";
import { emitEvent, markSessionRevoked, PermissionDeniedError, type Principal, type Queryable, requireCaller, UnauthenticatedError, withTransaction } from "@ttip/runtime";
import { SessionsEndedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { SessionSchema, TokenPairSchema, type Session, type TokenPair } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { audit, AuditAction } from "./audit.js";
import type { AuthCore } from "./core.js";
import { opaqueToken, sha256 } from "./crypto.js";
import { clientAddressOf, sessionIdOf } from "./request.js";

export interface OpenedSession {
  sessionId: string;
  userId: string;
  roles: string[];
  refreshToken: string;
  refreshExpiresAt: Date;
}

/** Starts a session (a new refresh-token family) inside the caller's transaction. */
export async function openSession(
  core: AuthCore,
  tx: Queryable,
  s: { userId: string; roles: string[]; deviceId?: string; userAgent: string; ip: string; pinVerified: boolean },
): Promise<OpenedSession> {
  // Every way in (OTP, PIN, PIN reset) opens a session here: a blocked account gets none.
  const blocked = await tx.query("SELECT 1 FROM auth.users WHERE user_id = $1 AND blocked_at IS NOT NULL", [s.userId]);
  if (blocked.rowCount) throw new PermissionDeniedError("this account is blocked: contact support");
  const sessionId = randomUUID();
  const expiresAt = new Date(Date.now() + core.config.refreshTokenTtlSeconds * 1000);
  await tx.query(
    `INSERT INTO auth.sessions (session_id, user_id, device_id, user_agent, ip_address, pin_verified, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)`,
    [sessionId, s.userId, s.deviceId ?? null, s.userAgent, s.ip, s.pinVerified, expiresAt],
  );
  const refresh = await issueRefreshToken(core, tx, sessionId);
  return { sessionId, userId: s.userId, roles: s.roles, ...refresh };
}

async function issueRefreshToken(core: AuthCore, tx: Queryable, sessionId: string) {
  const refreshToken = opaqueToken("rt");
  const refreshExpiresAt = new Date(Date.now() + core.config.refreshTokenTtlSeconds * 1000);
  await tx.query("INSERT INTO auth.refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)", [
    sha256(refreshToken), sessionId, refreshExpiresAt,
  ]);
  return { refreshToken, refreshExpiresAt };
}

/**
 * Signs the access token for an opened or refreshed session. Call it after the
 * commit, outside any transaction: signing may read keys.
 */
export async function tokenPair(core: AuthCore, s: OpenedSession): Promise<TokenPair> {
  await invalidateSessionList(core, s.userId);
  const access = await core.keys.sign({ sub: s.userId, roles: s.roles, sid: s.sessionId }, core.config.accessTokenTtlSeconds);
  return create(TokenPairSchema, {
    accessToken: access.token,
    accessTokenExpiresAt: timestampFromDate(access.expiresAt),
    refreshToken: s.refreshToken,
    refreshTokenExpiresAt: timestampFromDate(s.refreshExpiresAt),
  });
}

const unauthenticated = () => new UnauthenticatedError("refresh token is not valid: sign in again");

/**
 * Rotates a refresh token. A token that was already rotated is reuse: someone
 * holds a copy, so the whole family (the session) is revoked and both the
 * thief and the owner must sign in again. Except within a minute of its
 * rotation while no later token was used (answerLost): a phone that never got
 * the answer asks again, and is not signed out for it.
 */
export async function refreshSession(core: AuthCore, refreshToken: string, ip: string): Promise<TokenPair> {
  const outcome = await withTransaction(core.ctx.pool, async (tx) => {
    const { rows } = await tx.query(
      `SELECT r.session_id, r.expires_at, r.used_at, s.user_id, s.revoked_at, s.expires_at AS session_expires_at, u.roles, u.blocked_at
         FROM auth.refresh_tokens r JOIN auth.sessions s USING (session_id) JOIN auth.users u USING (user_id)
        WHERE r.token_hash = $1
        FOR UPDATE OF r, s`,
      [sha256(refreshToken)],
    );
    const row = rows[0];
    if (!row) return { kind: "unknown" as const };
    if (row.revoked_at || row.blocked_at) return { kind: "revoked" as const };
    const now = new Date();
    if (row.expires_at <= now || row.session_expires_at <= now) return { kind: "expired" as const };
    if (row.used_at && (await answerLost(tx, sha256(refreshToken)))) {
      // Its successor never reached the holder: replaced by a new one, which they get this time. Audited with the
      // caller's address, beside the rotation's: a copy's holder elsewhere shows as a second address.
      await tx.query("UPDATE auth.refresh_tokens SET used_at = now(), superseded_at = now() WHERE session_id = $1 AND used_at IS NULL", [row.session_id]);
      await audit(tx, AuditAction.REFRESH_REISSUED, { userId: row.user_id, ip, detail: `session ${row.session_id}: a refresh asked again, its answer taken as lost` });
    } else if (row.used_at) {
      const revoked = await revokeSessions(tx, "session_id = $1", [row.session_id], "refresh token reuse");
      await audit(tx, AuditAction.REFRESH_REUSE_DETECTED, { userId: row.user_id, ip, detail: `session ${row.session_id} revoked` });
      return { kind: "reused" as const, revoked };
    }
    await tx.query("UPDATE auth.refresh_tokens SET used_at = now() WHERE token_hash = $1 AND used_at IS NULL", [sha256(refreshToken)]);
    await tx.query("UPDATE auth.sessions SET last_used_at = now(), ip_address = $2 WHERE session_id = $1", [row.session_id, ip]);
    const next = await issueRefreshToken(core, tx, row.session_id);
    return { kind: "ok" as const, session: { sessionId: row.session_id, userId: row.user_id, roles: row.roles, ...next } };
  });
  // The revocation above is committed before the caller hears no.
  if (outcome.kind === "reused") await forgetSessions(core, outcome.revoked);
  if (outcome.kind !== "ok") throw unauthenticated();
  return tokenPair(core, outcome.session);
}

/** How long after a rotation its token may be presented again, when the answer carrying its successor was lost. */
const LOST_ANSWER_GRACE_SECONDS = 60;

/**
 * Whether a rotated token is presented again because its holder never got its successor: within the grace of its
 * rotation, and no token issued since was presented (they were only superseded by such asks). A superseded token,
 * never handed over, is always reuse. A copy's holder presenting it in that minute gets a session the owner's next
 * refresh then ends, as reuse.
 */
async function answerLost(tx: Queryable, tokenHash: Buffer): Promise<boolean> {
  // Read here, not passed in: a JavaScript Date drops used_at's microseconds.
  const { rows: [row] } = await tx.query(
    `SELECT r.used_at > now() - make_interval(secs => $2) AND NOT EXISTS (
       SELECT 1 FROM auth.refresh_tokens l WHERE l.session_id = r.session_id AND l.used_at > r.used_at AND l.superseded_at IS NULL) AS lost
       FROM auth.refresh_tokens r WHERE r.token_hash = $1 AND r.superseded_at IS NULL`,
    [tokenHash, LOST_ANSWER_GRACE_SECONDS]);
  return row?.lost === true;
}

export interface RevokedSession {
  session_id: string;
  user_id: string;
}

/**
 * Revokes the sessions matching `where` (on the sessions table) inside `tx`.
 * Call forgetSessions with the result after the commit, so no reader can
 * re-cache the old state in between.
 */
export async function revokeSessions(tx: Queryable, where: string, params: unknown[], reason: string): Promise<RevokedSession[]> {
  const { rows } = await tx.query<RevokedSession>(
    `UPDATE auth.sessions SET revoked_at = now(), revoked_reason = $${params.length + 1}
      WHERE revoked_at IS NULL AND ${where} RETURNING session_id, user_id`,
    [...params, reason],
  );
  // Told with the change (notification forgets the push tokens those sessions registered).
  const byUser = new Map<string, string[]>();
  for (const r of rows) byUser.set(r.user_id, [...(byUser.get(r.user_id) ?? []), r.session_id]);
  for (const [userId, sessionIds] of byUser) await emitEvent(tx, "auth", SessionsEndedSchema, { userId, sessionIds, reason });
  return rows;
}

/** Drops the sessions' cached state; `revoked` (the default) also tells the gateway to refuse their tokens. */
export async function forgetSessions(core: AuthCore, sessions: RevokedSession[], revoked = true): Promise<void> {
  for (const r of sessions) {
    // Access tokens stay signed until they expire: the gateway refuses a revoked session's from now on.
    if (revoked) await markSessionRevoked(core.ctx.cache, r.session_id);
    await core.ctx.cache.del(`auth:session:${r.session_id}`);
    await invalidateSessionList(core, r.user_id);
  }
}

/** At most this many sessions' marks are written again per pass (the newest revoked first): a bound, far above a day's revocations in ten minutes. */
const REMARK_MAX_SESSIONS = 10_000;

/**
 * Writes again the cache's mark of every session revoked within an access token's life, and drops auth's
 * cached state of each. A mark lost after its revocation committed (Redis failed at that moment, failed
 * over to a replica without it, or evicted it) let that session's tokens through the gateway until they
 * expired, and a retry of the revocation found nothing left to revoke. Returns how many were written.
 */
export async function remarkRecentRevocations(core: AuthCore): Promise<number> {
  const { rows } = await core.ctx.pool.query<{ session_id: string }>(
    "SELECT session_id FROM auth.sessions WHERE revoked_at > now() - make_interval(secs => $1) ORDER BY revoked_at DESC LIMIT $2",
    [core.config.accessTokenTtlSeconds + 60, REMARK_MAX_SESSIONS],
  );
  for (const r of rows) {
    await markSessionRevoked(core.ctx.cache, r.session_id);
    await core.ctx.cache.del(`auth:session:${r.session_id}`);
  }
  return rows.length;
}

export interface SessionState {
  userId: string;
  active: boolean;
  pinVerified: boolean;
}

/** A session's state, from Redis when cached (revocation deletes the entry). */
export async function sessionState(core: AuthCore, sessionId: string): Promise<SessionState | undefined> {
  const key = `auth:session:${sessionId}`;
  const cached = await core.ctx.cache.get(key);
  if (cached) return JSON.parse(cached) as SessionState;
  const { rows } = await core.ctx.pool.query(
    "SELECT user_id, revoked_at, expires_at, pin_verified FROM auth.sessions WHERE session_id = $1",
    [sessionId],
  );
  if (!rows[0]) return undefined;
  const state: SessionState = {
    userId: rows[0].user_id,
    active: !rows[0].revoked_at && rows[0].expires_at > new Date(),
    pinVerified: rows[0].pin_verified,
  };
  await core.ctx.cache.set(key, JSON.stringify(state), 300);
  return state;
}

export async function invalidateSessionList(core: AuthCore, userId: string): Promise<void> {
  await core.ctx.cache.del(`auth:sessions:${userId}`);
}

/**
 * The signed-in caller. When the token names its session (the gateway passes
 * the `sid` claim), that session must still be active and the caller's own:
 * a revoked session's access tokens stop working here at once.
 */
export async function requireSession(core: AuthCore, ctx: HandlerContext): Promise<{ caller: Principal; sessionId?: string; ip: string }> {
  const caller = requireCaller(ctx);
  const sessionId = sessionIdOf(ctx);
  if (sessionId) {
    const state = await sessionState(core, sessionId);
    if (!state || !state.active || state.userId !== caller.subject) {
      throw new UnauthenticatedError("this session was revoked: sign in again");
    }
  }
  return { caller, sessionId, ip: clientAddressOf(ctx) };
}

/**
 * The calling session still active, read under its row's lock in the transaction about to act for it: a revocation
 * (sign out everywhere, a removed phone) committed while the call checked its PIN would otherwise not stop it, and a
 * key or PIN it set would outlive the sign-out. A revocation after it waits for the commit, and ends what it made.
 */
export async function requireSessionLive(tx: Queryable, sessionId: string | undefined): Promise<void> {
  if (!sessionId) return;
  const { rows } = await tx.query("SELECT 1 FROM auth.sessions WHERE session_id = $1 AND revoked_at IS NULL FOR SHARE", [sessionId]);
  if (!rows[0]) throw new UnauthenticatedError("this session was revoked: sign in again");
}

/** An active session's row, from the database or the user's cached list (times as ISO text). */
export interface SessionRow {
  session_id: string;
  device_id: string | null;
  user_agent: string;
  ip_address: string;
  created_at: Date | string;
  last_used_at: Date | string;
}

/** A SessionRow's columns (named, so the statements reading them are prepared). */
export const SESSION_COLUMNS = "session_id, device_id, user_agent, ip_address, created_at, last_used_at";

/** The Session message of a row; `current` marks the caller's own. */
export function sessionMessage(r: SessionRow, current = false): Session {
  return create(SessionSchema, {
    sessionId: r.session_id,
    deviceId: r.device_id ?? "",
    userAgent: r.user_agent,
    ipAddress: r.ip_address,
    createdAt: timestampFromDate(new Date(r.created_at)),
    lastUsedAt: timestampFromDate(new Date(r.last_used_at)),
    current,
  });
}
