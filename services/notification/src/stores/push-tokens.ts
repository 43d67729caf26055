// Push tokens: the devices a user's push notifications go to.
import type { Queryable } from "@ttip/runtime";

export async function pushTokens(db: Queryable, userId: string): Promise<string[]> {
  const { rows } = await db.query<{ token: string }>("SELECT token FROM notification.push_tokens WHERE user_id = $1 ORDER BY created_at", [userId]);
  return rows.map((r) => r.token);
}

/**
 * The most tokens a user keeps: a phone or two, reinstalled now and then. Past it the oldest go, where a caller could
 * register thousands, each push then sent to every one at once (and the table grew without end).
 */
export const MAX_PUSH_TOKENS_PER_USER = 10;

/** A device that changes hands follows its new owner; `sessionId`, the session it was registered from (when known). */
export async function registerPushToken(db: Queryable, userId: string, token: string, platform: string, sessionId: string | undefined): Promise<void> {
  await db.query(
    `INSERT INTO notification.push_tokens (token, user_id, platform, session_id) VALUES ($1, $2, $3, $4)
     ON CONFLICT (token) DO UPDATE SET user_id = $2, platform = $3, session_id = $4, created_at = now()`,
    [token, userId, platform, sessionId ?? null],
  );
  await db.query(
    `DELETE FROM notification.push_tokens WHERE token IN (
       SELECT token FROM notification.push_tokens WHERE user_id = $1 ORDER BY created_at DESC, token OFFSET $2)`,
    [userId, MAX_PUSH_TOKENS_PER_USER],
  );
}

/** The tokens registered from sessions auth ended: those phones are signed out. */
export async function forgetSessionsPushTokens(db: Queryable, userId: string, sessionIds: string[]): Promise<void> {
  await db.query("DELETE FROM notification.push_tokens WHERE user_id = $1 AND session_id = ANY($2::uuid[])", [userId, sessionIds]);
}

/** Only the owner's token goes; another user's matches nothing. */
export async function unregisterPushToken(db: Queryable, userId: string, token: string): Promise<void> {
  await db.query("DELETE FROM notification.push_tokens WHERE token = $1 AND user_id = $2", [token, userId]);
}
