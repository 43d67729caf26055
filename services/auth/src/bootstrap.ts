// The first admin. Nobody can grant the admin role before an admin exists,
// so the platform issues a one-time setup token (shown once: printed by
// `make run` at start, or by `main.ts setup-token` in a cluster) and the
// first person to present it, signed in with a PIN from an admin network,
// becomes admin. Both steps are audited; once an admin exists no token is
// issued or accepted again.
import { type HandlerContext } from "@connectrpc/connect";
import { InvalidStateError, lockForTransaction, PermissionDeniedError, type Pool, type Queryable, withTransaction } from "@ttip/runtime";
import { audit, AuditAction } from "./audit.js";
import type { AuthCore } from "./core.js";
import { opaqueToken, sha256 } from "./crypto.js";
import { requireSession, sessionState } from "./sessions.js";
import { getUser, USER_COLUMNS, type UserRow } from "./users.js";

/** How long a setup token is good for: long enough to sign up and set a PIN. */
export const SETUP_TOKEN_TTL_MS = 24 * 3600_000;

// Both issuing and claiming take this lock, so a claim and a new token never cross.
export const ADMIN_ROLE_LOCK = "ttip.auth.first_admin";
const lock = (tx: Queryable) => lockForTransaction(tx, ADMIN_ROLE_LOCK);

/**
 * Whether an admin who can sign in exists (one blocked cannot), other than `except` when given: the console's way
 * back in. With none left, a setup token is; the last one keeps the role and is not blocked (admin.ts).
 */
export async function activeAdminExists(tx: Queryable, except?: string): Promise<boolean> {
  const { rowCount } = await tx.query("SELECT 1 FROM auth.users WHERE 'admin' = ANY(roles) AND blocked_at IS NULL AND user_id IS DISTINCT FROM $1 LIMIT 1", [except ?? null]);
  return !!rowCount;
}

/**
 * A new one-time setup token while the platform has no admin (any earlier
 * token stops working), or undefined once one exists. The token is returned
 * once and kept only as a hash.
 */
export async function issueSetupToken(pool: Pool, how = "at start"): Promise<{ token: string; expiresAt: Date } | undefined> {
  return withTransaction(pool, async (tx) => {
    await lock(tx);
    if (await activeAdminExists(tx)) return undefined;
    await tx.query("UPDATE auth.setup_tokens SET spent_at = now() WHERE spent_at IS NULL");
    const token = opaqueToken("ttip_setup", 24);
    const expiresAt = new Date(Date.now() + SETUP_TOKEN_TTL_MS);
    await tx.query("INSERT INTO auth.setup_tokens (token_hash, expires_at) VALUES ($1, $2)", [sha256(token), expiresAt]);
    await audit(tx, AuditAction.SETUP_TOKEN_ISSUED, { detail: `first-admin setup token issued ${how}, expires ${expiresAt.toISOString()}` });
    return { token, expiresAt };
  });
}

/** ClaimFirstAdmin: the caller (signed in with a PIN) becomes admin with a live setup token. */
export async function claimFirstAdmin(core: AuthCore, setupToken: string, ctx: HandlerContext): Promise<UserRow> {
  const { caller, sessionId, ip } = await requireSession(core, ctx);
  const state = sessionId ? await sessionState(core, sessionId) : undefined;
  if (!state?.pinVerified) throw new InvalidStateError("set or enter your PIN first: the first admin must sign in with a PIN");
  return withTransaction(core.ctx.pool, async (tx) => {
    await lock(tx);
    if (await activeAdminExists(tx)) throw new InvalidStateError("an admin already exists: ask an admin to grant you a role");
    const spent = await tx.query(
      "UPDATE auth.setup_tokens SET spent_at = now(), claimed_by = $2 WHERE token_hash = $1 AND spent_at IS NULL AND expires_at > now() RETURNING 1",
      [sha256(setupToken), caller.subject],
    );
    if (!spent.rowCount) {
      await audit(tx, AuditAction.LOGIN_FAILED, { userId: caller.subject, ip, detail: "wrong, used or expired first-admin setup token" });
      throw new PermissionDeniedError("setup_token: wrong, used or expired; restart the platform or run `main.ts setup-token` for a new one");
    }
    const before = await getUser(tx, caller.subject, true);
    const roles = [...new Set([...before.roles, "admin"])];
    const { rows } = await tx.query(`UPDATE auth.users SET roles = $2, updated_at = now() WHERE user_id = $1 RETURNING ${USER_COLUMNS}`, [caller.subject, roles]);
    await audit(tx, AuditAction.ADMIN_BOOTSTRAPPED, { userId: caller.subject, actorUserId: caller.subject, ip, detail: `first admin: roles ${before.roles.join(",")} -> ${roles.join(",")}` });
    return rows[0] as UserRow;
  });
}
