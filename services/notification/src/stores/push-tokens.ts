// Push tokens: the devices a user's push notifications go to.
import type { Queryable } from "@ttip/runtime";

export async function pushTokens(db: Queryable, userId: string): Promise<string[]> {
  const { rows } = await db.query<{ token: string }>("SELECT token FROM notification.push_tokens WHERE user_id = $1 ORDER BY created_at", [userId]);
  return rows.map((r) => r.token);
}

/** A device that changes hands follows its new owner. */
export async function registerPushToken(db: Queryable, userId: string, token: string, platform: string): Promise<void> {
  await db.query(
    `INSERT INTO notification.push_tokens (token, user_id, platform) VALUES ($1, $2, $3)
     ON CONFLICT (token) DO UPDATE SET user_id = $2, platform = $3, created_at = now()`,
    [token, userId, platform],
  );
}

/** Only the owner's token goes; another user's matches nothing. */
export async function unregisterPushToken(db: Queryable, userId: string, token: string): Promise<void> {
  await db.query("DELETE FROM notification.push_tokens WHERE token = $1 AND user_id = $2", [token, userId]);
}
